// libceler's public surface: load a GGUF model, tokenize, generate. Front ends include only
// this header.
#pragma once

#include "engine/engine.h"    // celer::Engine, EngineOptions, GenerateStats
#include "engine/sampler.h"   // celer::SamplerParams
#include "util/error.h"       // celer::Error
