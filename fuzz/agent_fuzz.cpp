// libFuzzer target: bytes from a model server as celer code reads them. The first byte picks
// the parser (HTTP response, SSE, WebSocket frames, a URL, a transcript file); the next says
// where to cut the rest in two, since network input arrives in pieces. Anything but
// celer::Error escaping, a crash, a sanitizer report or a hang is a bug.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <unistd.h>

#include "agent/net.h"
#include "agent/transcript.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t which = data[0] % 5;
    const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
    const size_t cut = rest.empty() ? 0 : data[1] % (rest.size() + 1);
    const std::string_view a = rest.substr(0, cut), b = rest.substr(cut);
    using namespace celer::agent;
    try {
        if (which == 0) {
            HttpResponseParser p;
            std::string body = p.feed(a);
            body += p.feed(b);
            p.eof();
        } else if (which == 1) {
            SseParser p;
            size_t n = p.feed(a).size();
            n += p.feed(b).size();
            (void)n;
        } else if (which == 2) {
            WsParser p(1 << 20);
            size_t n = p.feed(a).size();
            n += p.feed(b).size();
            (void)n;
        } else if (which == 3) {
            (void)Url::parse(rest);
        } else {
            static const auto path = std::filesystem::temp_directory_path() / ("celer-agent-fuzz-" + std::to_string(::getpid()) + ".jsonl");
            {
                std::ofstream f(path, std::ios::binary | std::ios::trunc);
                f.write(rest.data(), std::streamsize(rest.size()));
            }
            (void)load_transcript(path);
        }
    } catch (const celer::Error&) {
    }
    return 0;
}
