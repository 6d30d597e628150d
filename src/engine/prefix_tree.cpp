#include "engine/prefix_tree.h"

#include <algorithm>

namespace celer {
namespace {

constexpr uint32_t B = KvPool::kBlockTokens;

}  // namespace

size_t common_prefix(std::span<const TokenId> a, std::span<const TokenId> b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

PrefixTree::PrefixTree(std::shared_ptr<KvPool> pool) : pool_(std::move(pool)) {
    pool_->set_reclaimer([this](size_t n) { evict(n); });
}

PrefixTree::~PrefixTree() {
    pool_->set_reclaimer(nullptr);
    clear();
}

PrefixTree::Node* PrefixTree::full_child(const Node& n, std::span<const TokenId> tokens) {
    for (const auto& c : n.children)
        if (c->tokens.size() == B && c->tokens[0] == tokens[0] && std::equal(c->tokens.begin(), c->tokens.end(), tokens.begin()))
            return c.get();
    return nullptr;
}

uint32_t PrefixTree::match(std::span<const TokenId> tokens, uint32_t max_n) const {
    tokens = tokens.first(std::min<size_t>(tokens.size(), max_n));
    const Node* n = &root_;
    size_t done = 0;
    while (tokens.size() - done >= B) {
        const Node* c = full_child(*n, tokens.subspan(done, B));
        if (!c) break;
        n = c;
        done += B;
    }
    size_t best = 0;
    for (const auto& c : n->children) best = std::max(best, common_prefix(c->tokens, tokens.subspan(done)));
    return uint32_t(done + best);
}

uint32_t PrefixTree::load(std::span<const TokenId> tokens, uint32_t max_n, KvCache& cache) {
    tokens = tokens.first(std::min<size_t>({tokens.size(), max_n, cache.n_ctx()}));
    const uint64_t now = ++clock_;
    Node* n = &root_;
    std::vector<int32_t> blocks;
    size_t done = 0;
    while (tokens.size() - done >= B) {
        Node* c = full_child(*n, tokens.subspan(done, B));
        if (!c) break;
        n = c;
        n->last_used = now;
        blocks.push_back(n->block);
        done += B;
    }
    // The child sharing most of what is left lends its block for those positions; the cache
    // copies it before its first write there (KvCache::reserve).
    Node* tail = nullptr;
    size_t tail_n = 0;
    for (const auto& c : n->children) {
        const size_t m = common_prefix(c->tokens, tokens.subspan(done));
        if (m > tail_n) tail = c.get(), tail_n = m;
    }
    if (tail) {
        tail->last_used = now;
        blocks.push_back(tail->block);
        done += tail_n;
    }
    cache.assign(blocks, uint32_t(done));
    return uint32_t(done);
}

void PrefixTree::insert(std::span<const TokenId> tokens, const KvCache& cache, bool with_tail) {
    const size_t n_tok = std::min<size_t>(tokens.size(), cache.n_past());
    const auto blocks = cache.blocks();
    const uint64_t now = ++clock_;
    Node* n = &root_;
    for (size_t i = 0; i * B < n_tok; ++i) {
        const auto t = tokens.subspan(i * B, std::min<size_t>(B, n_tok - i * B));
        const bool full = t.size() == B;
        if (!full && !with_tail) break;
        if (full) {
            if (Node* c = full_child(*n, t)) {
                n = c;
                n->last_used = now;
                continue;
            }
        } else {
            // A tail adds nothing when some child already holds at least these tokens.
            bool covered = false;
            for (const auto& c : n->children) covered = covered || common_prefix(c->tokens, t) == t.size();
            if (covered) {
                for (const auto& c : n->children)
                    if (common_prefix(c->tokens, t) == t.size()) c->last_used = now;
                break;
            }
        }
        // Tails that this block extends are superseded by it.
        std::vector<Node*> stale;
        for (const auto& c : n->children)
            if (c->tokens.size() < t.size() && common_prefix(c->tokens, t) == c->tokens.size()) stale.push_back(c.get());
        for (Node* s : stale) drop(s);
        auto node = std::make_unique<Node>();
        node->tokens.assign(t.begin(), t.end());
        node->block = blocks[i];
        node->parent = n;
        node->last_used = now;
        pool_->retain(node->block);
        ++n_nodes_;
        n->children.push_back(std::move(node));
        n = n->children.back().get();
        if (!full) break;
    }
}

void PrefixTree::drop(Node* n) {
    Node* p = n->parent;
    pool_->release(n->block);
    --n_nodes_;
    auto it = std::find_if(p->children.begin(), p->children.end(), [&](const auto& c) { return c.get() == n; });
    p->children.erase(it);
}

size_t PrefixTree::n_evictable() const {
    // A node is evictable once all its descendants are: only the tree holds its block and theirs.
    size_t count = 0;
    const auto walk = [&](const auto& self, const Node& n) -> bool {
        bool all = true;
        for (const auto& c : n.children) all = self(self, *c) && all;
        const bool mine = &n != &root_ && pool_->refs(n.block) == 1 && all;
        count += mine;
        return mine;
    };
    walk(walk, root_);
    return count;
}

size_t PrefixTree::evict(size_t want) {
    size_t freed = 0;
    while (freed < want) {
        // Leaves nobody else holds, oldest first; evicting one may expose its parent.
        std::vector<Node*> leaves;
        const auto walk = [&](const auto& self, Node& n) -> void {
            for (auto& c : n.children) self(self, *c);
            if (&n != &root_ && n.children.empty() && pool_->refs(n.block) == 1) leaves.push_back(&n);
        };
        walk(walk, root_);
        if (leaves.empty()) break;
        std::sort(leaves.begin(), leaves.end(), [](const Node* a, const Node* b) { return a->last_used < b->last_used; });
        for (Node* l : leaves) {
            if (freed == want) break;
            drop(l);
            ++freed;
            ++evictions_;
        }
    }
    return freed;
}

void PrefixTree::clear() {
    const auto walk = [&](const auto& self, Node& n) -> void {
        for (auto& c : n.children) self(self, *c);
        if (&n != &root_) pool_->release(n.block);
    };
    walk(walk, root_);
    root_.children.clear();
    n_nodes_ = 0;
}

}  // namespace celer
