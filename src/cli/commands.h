// One function per subcommand; each returns the process exit code.
#pragma once

#include "cli/args.h"
#include "engine/engine.h"

namespace celer::cli {

int cmd_run(Args& a);
int cmd_info(Args& a);
int cmd_synth(Args& a);
int cmd_tokenize(Args& a);
int cmd_bench(Args& a);
int cmd_template(Args& a);
int cmd_serve(Args& a);
int cmd_code(Args& a);
int cmd_pull(Args& a);
int cmd_list(Args& a);
int cmd_rm(Args& a);
int cmd_quantize(Args& a);
int cmd_convert(Args& a);

// The model a command should use when -m is not given: a small synthetic demo model, written
// to the cache directory on first use. Returns its path.
std::string demo_model_path();

// --rope-scaling none|linear|ntk|yarn, --rope-scale S, --yarn-orig-ctx N into the options.
void read_model_flags(Args& a, celer::EngineOptions& eo);

}  // namespace celer::cli
