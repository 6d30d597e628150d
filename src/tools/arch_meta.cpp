#include "tools/arch_meta.h"

namespace celer {

void write_arch_metadata(gguf::Writer& w, const ArchMeta& m) {
    const std::string& a = m.arch;
    w.set_u32(a + ".context_length", m.n_ctx);
    w.set_u32(a + ".embedding_length", m.n_embd);
    w.set_u32(a + ".block_count", m.n_layer);
    w.set_u32(a + ".feed_forward_length", m.n_ff);
    w.set_u32(a + ".attention.head_count", m.n_head);
    w.set_u32(a + ".attention.head_count_kv", m.n_head_kv);
    // Only when the heads do not split the embedding evenly (Qwen3), as llama.cpp writes it.
    if (m.head_dim * m.n_head != m.n_embd) {
        w.set_u32(a + ".attention.key_length", m.head_dim);
        w.set_u32(a + ".attention.value_length", m.head_dim);
    }
    w.set_u32(a + ".rope.dimension_count", m.head_dim);
    w.set_f32(a + ".rope.freq_base", m.rope_base);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", m.rms_eps);
    if (!m.rope_scaling.empty()) {
        w.set_string(a + ".rope.scaling.type", m.rope_scaling);
        w.set_f32(a + ".rope.scaling.factor", m.rope_factor);
        if (m.rope_orig_ctx) w.set_u32(a + ".rope.scaling.original_context_length", m.rope_orig_ctx);
    }
}

}  // namespace celer
