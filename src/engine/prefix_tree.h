// Prefix reuse across requests and sessions: a radix tree over KV blocks (in the manner of
// SGLang's RadixAttention). Each node is one block of the pool and the tokens whose keys and
// values it holds; a path from the root spells a token prefix some sequence computed. A new
// sequence takes the blocks of the longest path its tokens follow by reference, so any prefix
// cached anywhere (an earlier turn, another session's system prompt and files) is never
// computed again. The tree holds one reference on each of its blocks; blocks that only it holds
// are evicted least recently used first when the pool runs out.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/kv_cache.h"
#include "model/model.h"

namespace celer {

// How many leading tokens a and b share.
size_t common_prefix(std::span<const TokenId> a, std::span<const TokenId> b);

class PrefixTree {
public:
    // Becomes the pool's reclaimer: the pool evicts through it when it runs out of blocks.
    explicit PrefixTree(std::shared_ptr<KvPool> pool);
    ~PrefixTree();
    PrefixTree(const PrefixTree&) = delete;
    PrefixTree& operator=(const PrefixTree&) = delete;

    // How many leading tokens of `tokens` the tree holds, at most max_n.
    uint32_t match(std::span<const TokenId> tokens, uint32_t max_n) const;
    // Makes `cache` (of this tree's pool) hold the longest cached prefix of `tokens`, at most
    // max_n positions: full blocks by reference, and a block that only partly matches too (the
    // cache copies it before writing there). Returns the positions loaded; marks them used.
    uint32_t load(std::span<const TokenId> tokens, uint32_t max_n, KvCache& cache);
    // Records `cache`, whose positions hold `tokens` (one per position): each full block, and the
    // partly filled last one when `with_tail` is set (a sequence that is done with it). Blocks the
    // tree has already (the same tokens computed by someone else) are left as they are.
    void insert(std::span<const TokenId> tokens, const KvCache& cache, bool with_tail);
    // Frees up to n blocks that nobody but the tree holds, least recently used first. Returns
    // how many it freed.
    size_t evict(size_t n);
    // Drops every node (the blocks others hold stay theirs).
    void clear();

    size_t n_nodes() const { return n_nodes_; }
    uint64_t evictions() const { return evictions_; }
    // Blocks that only the tree holds: what evict() could free now.
    size_t n_evictable() const;

private:
    struct Node {
        std::vector<TokenId> tokens;  // kBlockTokens, or fewer in a tail (always a leaf)
        int32_t block = -1;
        Node* parent = nullptr;
        std::vector<std::unique_ptr<Node>> children;
        uint64_t last_used = 0;
    };
    // The child of `n` holding exactly `tokens` as a full block, or nullptr.
    static Node* full_child(const Node& n, std::span<const TokenId> tokens);
    void drop(Node* n);  // a leaf: releases its block and removes it from its parent

    std::shared_ptr<KvPool> pool_;
    Node root_;
    size_t n_nodes_ = 0;
    uint64_t clock_ = 0, evictions_ = 0;
};

}  // namespace celer
