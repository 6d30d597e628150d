#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>

#include <fmt/format.h>

#include "agent/sandbox.h"
#include "agent/tools.h"
#include "util/error.h"

namespace celer::agent {
namespace {

// A fresh folder under /tmp for one test, removed at its end. Under /tmp on purpose: the
// sandbox must keep such a workspace visible over its private /tmp.
class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "celer-agent-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = fs::canonical(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

void write(const fs::path& p, const std::string& content) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// ---------------------------------------------------------------------------------------------
// Workspace

TEST(AgentToolsWorkspace, ResolveStaysInside) {
    TempDir t;
    const fs::path outside = t.path() / "outside";
    const fs::path root = t.path() / "ws";
    write(root / "src/a.txt", "a\n");
    write(outside / "secret.txt", "s\n");
    fs::create_directory_symlink(outside, root / "out_link");
    fs::create_symlink(root / "src/a.txt", root / "in_link");
    fs::create_symlink(outside / "new.txt", root / "dangling");
    const Workspace ws(root);

    EXPECT_EQ(ws.resolve("src/a.txt", true), root / "src/a.txt");
    EXPECT_EQ(ws.resolve((root / "src/a.txt").string(), true), root / "src/a.txt");
    EXPECT_EQ(ws.resolve("in_link", true), root / "src/a.txt");
    EXPECT_EQ(ws.resolve("src/new/b.txt", false), root / "src/new/b.txt");
    EXPECT_EQ(ws.resolve(".", true), root);
    EXPECT_EQ(ws.relative(root), ".");
    EXPECT_EQ(ws.relative(root / "src/a.txt"), "src/a.txt");

    for (const std::string bad : {"../outside/secret.txt", "src/../../outside/secret.txt", "src/new/../../../x"})
        EXPECT_TRUE(contains(error_of([&] { ws.resolve(bad, false); }), "outside the workspace")) << bad;
    EXPECT_TRUE(contains(error_of([&] { ws.resolve("/etc/passwd", true); }), "outside the workspace"));
    EXPECT_TRUE(contains(error_of([&] { ws.resolve((outside / "secret.txt").string(), true); }), "outside the workspace"));
    EXPECT_TRUE(contains(error_of([&] { ws.resolve("out_link/secret.txt", true); }), "outside the workspace"));
    EXPECT_TRUE(contains(error_of([&] { ws.resolve("out_link/new.txt", false); }), "outside the workspace"));
    EXPECT_TRUE(contains(error_of([&] { ws.resolve("dangling", false); }), "outside the workspace"));
    EXPECT_TRUE(contains(error_of([&] { ws.resolve("", false); }), "empty"));
    EXPECT_TRUE(contains(error_of([&] { ws.resolve("missing.txt", true); }), "no such file"));
    EXPECT_THROW(Workspace(t.path() / "nope"), Error);
}

TEST(AgentToolsGitignore, Patterns) {
    TempDir t;
    const fs::path r = t.path();
    write(r / ".gitignore",
          "# comment\n"
          "*.log\n"
          "!keep.log\n"
          "/top.txt\n"
          "build/\n"
          "docs/**/*.tmp\n"
          "cache/**\n");
    write(r / "sub/.gitignore", "*.gen\n/local.txt\n!/deep.log\n");
    const Workspace ws(r);
    auto ign = [&](const char* p, bool dir = false) { return ws.ignored(r / p, dir); };

    EXPECT_TRUE(ign(".git", true));
    EXPECT_TRUE(ign(".git/config"));
    EXPECT_TRUE(ign("a.log"));
    EXPECT_TRUE(ign("x/y/z.log"));  // unanchored: any depth
    EXPECT_FALSE(ign("keep.log"));  // negation
    EXPECT_FALSE(ign("x/keep.log"));
    EXPECT_TRUE(ign("top.txt"));  // anchored to the root
    EXPECT_FALSE(ign("x/top.txt"));
    EXPECT_TRUE(ign("build", true));  // folders only
    EXPECT_FALSE(ign("build"));
    EXPECT_TRUE(ign("x/build/out.o"));  // inside an ignored folder
    EXPECT_TRUE(ign("docs/a.tmp"));     // "**/" matches no folder too
    EXPECT_TRUE(ign("docs/a/b/c.tmp"));
    EXPECT_FALSE(ign("other/a.tmp"));
    EXPECT_TRUE(ign("cache/x/y"));
    EXPECT_FALSE(ign("cache", true));  // "dir/**" is what is inside
    EXPECT_FALSE(ign(".gitignore"));
    // Nested file: applies to its own folder, anchors there, and overrides the root's rules.
    EXPECT_TRUE(ign("sub/a.gen"));
    EXPECT_TRUE(ign("sub/x/a.gen"));
    EXPECT_FALSE(ign("a.gen"));
    EXPECT_TRUE(ign("sub/local.txt"));
    EXPECT_FALSE(ign("sub/x/local.txt"));
    EXPECT_FALSE(ign("sub/deep.log"));
    EXPECT_TRUE(ign("sub/x/deep.log"));

    // A changed .gitignore is seen on the next call.
    write(r / "sub/.gitignore", "*.other\n");
    EXPECT_FALSE(ign("sub/a.gen"));
    EXPECT_TRUE(ign("sub/a.other"));
}

// ---------------------------------------------------------------------------------------------
// Read-only tools

TEST(AgentToolsList, GlobAndIgnore) {
    TempDir t;
    const fs::path r = t.path();
    write(r / ".gitignore", "build/\n*.o\n");
    write(r / "src/a.cpp", "");
    write(r / "src/sub/b.cpp", "");
    write(r / "src/b.h", "");
    write(r / "src/a.o", "");
    write(r / "build/gen.cpp", "");
    write(r / ".git/HEAD", "");
    write(r / "README.md", "");
    const Workspace ws(r);

    EXPECT_EQ(list_files(ws, json::object()).for_model, ".gitignore\nREADME.md\nsrc/a.cpp\nsrc/b.h\nsrc/sub/b.cpp\n");
    EXPECT_EQ(list_files(ws, {{"pattern", "src/**/*.cpp"}}).for_model, "src/a.cpp\nsrc/sub/b.cpp\n");
    EXPECT_EQ(list_files(ws, {{"pattern", "*.h"}}).for_model, "src/b.h\n");
    EXPECT_EQ(list_files(ws, {{"path", "src"}, {"pattern", "sub/*.cpp"}}).for_model, "src/sub/b.cpp\n");
    EXPECT_EQ(list_files(ws, {{"pattern", "*.rs"}}).for_model, "(no files)\n");
    EXPECT_TRUE(contains(error_of([&] { list_files(ws, {{"path", 3}}); }), "list_files: path: expected a string"));
}

TEST(AgentToolsList, CapsWithANote) {
    TempDir t;
    for (int i = 0; i < 1005; ++i) write(t.path() / "f" / fmt::format("{:04}.txt", i), "");
    const std::string out = list_files(Workspace(t.path()), json::object()).for_model;
    EXPECT_TRUE(contains(out, "f/0999.txt\n"));
    EXPECT_FALSE(contains(out, "f/1000.txt"));
    EXPECT_TRUE(contains(out, "5 more files not shown"));
}

TEST(AgentToolsSearch, RegexBinaryAndIgnored) {
    TempDir t;
    const fs::path r = t.path();
    write(r / ".gitignore", "ignored/\n");
    write(r / "a.txt", "alpha\nbeta 42\ngamma 7\n");
    write(r / "sub/b.md", "delta 9\n");
    write(r / "ignored/c.txt", "beta 1\n");
    write(r / "bin.dat", std::string("beta 3\0\x01", 8));
    write(r / "long.txt", std::string(400, 'x') + "\n");
    const Workspace ws(r);

    EXPECT_EQ(search(ws, {{"pattern", R"(\d+$)"}}).for_model, "a.txt:2: beta 42\na.txt:3: gamma 7\nsub/b.md:1: delta 9\n");
    EXPECT_EQ(search(ws, {{"pattern", "^d"}, {"glob", "*.md"}}).for_model, "sub/b.md:1: delta 9\n");
    EXPECT_EQ(search(ws, {{"pattern", "a"}, {"path", "sub"}}).for_model, "sub/b.md:1: delta 9\n");
    EXPECT_EQ(search(ws, {{"pattern", "nothing"}}).for_model, "(no matches)\n");
    const std::string cut = search(ws, {{"pattern", "^x+$"}}).for_model;
    EXPECT_EQ(cut, "long.txt:1: " + std::string(300, 'x') + "…\n");
    const std::string bad = error_of([&] { search(ws, {{"pattern", "a(b"}}); });
    EXPECT_TRUE(contains(bad, "search: pattern:")) << bad;
    EXPECT_TRUE(contains(bad, "offset 3")) << bad;
}

TEST(AgentToolsSearch, CapsAt200) {
    TempDir t;
    std::string many;
    for (int i = 0; i < 300; ++i) many += "hit\n";
    write(t.path() / "a.txt", many);
    const std::string out = search(Workspace(t.path()), {{"pattern", "hit"}}).for_model;
    EXPECT_TRUE(contains(out, "a.txt:200: hit\n"));
    EXPECT_FALSE(contains(out, "a.txt:201:"));
    EXPECT_TRUE(contains(out, "stopped at 200 matches"));
}

TEST(AgentToolsRead, OffsetLimitAndErrors) {
    TempDir t;
    std::string text;
    for (int i = 1; i <= 30; ++i) text += fmt::format("line {}\n", i);
    write(t.path() / "a.txt", text);
    write(t.path() / "bin", std::string("x\0y", 3));
    const Workspace ws(t.path());

    const std::string all = read_file(ws, {{"path", "a.txt"}}).for_model;
    EXPECT_TRUE(contains(all, "    1\tline 1\n"));
    EXPECT_TRUE(contains(all, "   30\tline 30\n"));
    EXPECT_FALSE(contains(all, "showing"));
    EXPECT_EQ(read_file(ws, {{"path", "a.txt"}, {"offset", 12}, {"limit", 2}}).for_model,
              "   12\tline 12\n   13\tline 13\n[showing lines 12-13 of 30; read on with offset=14]\n");
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, {{"path", "a.txt"}, {"offset", 0}}); }), "offset: expected an integer >= 1"));
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, {{"path", "a.txt"}, {"limit", "5"}}); }), "limit: expected an integer >= 1"));
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, {{"path", "a.txt"}, {"offset", 1.5}}); }), "offset"));
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, {{"path", "a.txt"}, {"offset", 31}}); }), "past the end"));
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, {{"path", "bin"}}); }), "binary"));
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, json::object()); }), "read_file: path: missing"));
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, json::array()); }), "JSON object"));
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, {{"path", "../x"}}); }), "read_file: outside the workspace: ../x"));
    ASSERT_EQ(::mkfifo((t.path() / "fifo").c_str(), 0600), 0);
    EXPECT_TRUE(contains(error_of([&] { read_file(ws, {{"path", "fifo"}}); }), "not a regular file"));  // and does not block
}

// ---------------------------------------------------------------------------------------------
// apply_patch, undo, write_atomic

json edit(const std::string& search, const std::string& replace) { return {{"search", search}, {"replace", replace}}; }

TEST(AgentToolsPatch, EditsShowADiffAndUndo) {
    TempDir t;
    const fs::path f = t.path() / "a.txt";
    write(f, "one\ntwo\nthree\n");
    const Workspace ws(t.path());
    std::vector<UndoRecord> undo;

    const ToolResult r = apply_patch(ws, {{"path", "a.txt"}, {"edits", {edit("two\n", "TWO\n"), edit("TWO\nthree", "TWO\n3")}}}, undo, false);
    EXPECT_TRUE(r.ok);
    EXPECT_EQ(slurp(f), "one\nTWO\n3\n");
    EXPECT_EQ(r.for_user, "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n-three\n+TWO\n+3\n");
    EXPECT_TRUE(contains(r.for_model, "+2 -2"));
    ASSERT_EQ(undo.size(), 1u);

    apply_patch(ws, {{"path", "a.txt"}, {"edits", {edit("one", "1")}}}, undo, true);
    EXPECT_EQ(slurp(f), "1\nTWO\n3\n");
    EXPECT_TRUE(contains(undo_last(ws, undo), "Restored a.txt"));
    EXPECT_EQ(slurp(f), "one\nTWO\n3\n");
    undo_last(ws, undo);
    EXPECT_EQ(slurp(f), "one\ntwo\nthree\n");
    EXPECT_THROW(undo_last(ws, undo), Error);
}

TEST(AgentToolsPatch, FailuresWriteNothing) {
    TempDir t;
    const fs::path f = t.path() / "a.txt";
    write(f, "x = 1\ny = 1\n");
    write(t.path() / ".git/config", "[core]\n");
    const Workspace ws(t.path());
    std::vector<UndoRecord> undo;
    auto patch = [&](const json& args) { return error_of([&] { apply_patch(ws, args, undo, false); }); };

    const std::string ambiguous = patch({{"path", "a.txt"}, {"edits", {edit("x", "z"), edit("= 1", "= 2")}}});
    EXPECT_TRUE(contains(ambiguous, "edit 2 of 2: search text found 2 times")) << ambiguous;
    EXPECT_TRUE(contains(patch({{"path", "a.txt"}, {"edits", {edit("w = 1", "")}}}), "edit 1 of 1: search text not found"));
    EXPECT_TRUE(contains(patch({{"path", "a.txt"}, {"edits", {edit("", "new")}}}), "empty search"));
    EXPECT_EQ(slurp(f), "x = 1\ny = 1\n");
    EXPECT_TRUE(contains(patch({{"path", ".git/config"}, {"edits", {edit("[core]", "")}}}), "refusing to edit inside .git"));
    EXPECT_TRUE(contains(patch({{"path", "missing.txt"}, {"edits", {edit("a", "b")}}}), "no such file"));
    EXPECT_TRUE(contains(patch({{"path", "../x.txt"}, {"edits", {edit("", "b")}}}), "outside the workspace"));
    EXPECT_TRUE(contains(patch({{"path", 7}, {"edits", {edit("x", "y")}}}), "apply_patch: path: expected a string"));
    EXPECT_TRUE(contains(patch({{"path", "a.txt"}, {"edits", "x"}}), "apply_patch: edits:"));
    EXPECT_TRUE(contains(patch({{"path", "a.txt"}, {"edits", json::array()}}), "apply_patch: edits:"));
    EXPECT_TRUE(contains(patch({{"path", "a.txt"}, {"edits", {{{"search", "x"}, {"replace", 1}}}}}), "edits[0].replace: expected a string"));
    EXPECT_TRUE(contains(patch({{"path", "a.txt"}, {"edits", {"x"}}}), "edits[0]:"));
    EXPECT_EQ(slurp(f), "x = 1\ny = 1\n");
    EXPECT_EQ(slurp(t.path() / ".git/config"), "[core]\n");
    EXPECT_TRUE(undo.empty());
}

TEST(AgentToolsPatch, CreatesAFileAndUndoRemovesIt) {
    TempDir t;
    const Workspace ws(t.path());
    std::vector<UndoRecord> undo;
    const ToolResult r = apply_patch(ws, {{"path", "new/dir/b.txt"}, {"edits", {edit("", "hello\nworld"), edit("world", "there")}}}, undo, false);
    EXPECT_EQ(slurp(t.path() / "new/dir/b.txt"), "hello\nthere");
    EXPECT_TRUE(contains(r.for_model, "Created new/dir/b.txt"));
    EXPECT_EQ(r.for_user, "--- a/new/dir/b.txt\n+++ b/new/dir/b.txt\n@@ -0,0 +1,2 @@\n+hello\n+there\n\\ No newline at end of file\n");
    EXPECT_TRUE(contains(undo_last(ws, undo), "Removed new/dir/b.txt"));
    EXPECT_FALSE(fs::exists(t.path() / "new/dir/b.txt"));
}

TEST(AgentToolsPatch, WriteAtomicKeepsModeAndLeavesNoTemp) {
    TempDir t;
    const fs::path f = t.path() / "run.sh";
    write(f, "old");
    fs::permissions(f, fs::perms(0750));
    write_atomic(f, "new content");
    EXPECT_EQ(slurp(f), "new content");
    EXPECT_EQ(fs::status(f).permissions() & fs::perms::mask, fs::perms(0750));
    EXPECT_EQ(std::distance(fs::directory_iterator(t.path()), fs::directory_iterator()), 1);
    EXPECT_THROW(write_atomic(t.path() / "no/such/dir/x", "x"), Error);
}

TEST(AgentToolsDiff, HunksAndContext) {
    std::string before, after;
    for (int i = 1; i <= 20; ++i) {
        before += fmt::format("{}\n", i);
        after += i == 2 ? "two\n" : i == 18 ? "" : fmt::format("{}\n", i);
    }
    EXPECT_EQ(render_diff("n", before, after, false),
              "--- a/n\n+++ b/n\n"
              "@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n"
              "@@ -15,6 +15,5 @@\n 15\n 16\n 17\n-18\n 19\n 20\n");
    EXPECT_EQ(render_diff("n", before, before, false), "");
    const std::string colored = render_diff("n", "a\n", "b\n", true);
    EXPECT_TRUE(contains(colored, "\x1b[31m-a\x1b[0m\n"));
    EXPECT_TRUE(contains(colored, "\x1b[32m+b\x1b[0m\n"));
}

TEST(AgentToolsDefinitions, ShapeAndWriters) {
    const json tools = tool_definitions();
    std::vector<std::string> names;
    for (const json& t : tools) {
        EXPECT_EQ(t["type"], "function");
        EXPECT_EQ(t["parameters"]["type"], "object");
        EXPECT_FALSE(t["description"].get<std::string>().empty());
        names.push_back(t["name"]);
    }
    EXPECT_EQ(names, (std::vector<std::string>{"read_file", "list_files", "search", "apply_patch", "run_command"}));
    EXPECT_EQ(tools[4]["parameters"]["properties"]["timeout_s"]["type"], "integer");
    EXPECT_TRUE(tool_writes("apply_patch"));
    EXPECT_TRUE(tool_writes("run_command"));
    EXPECT_FALSE(tool_writes("read_file"));
}

// ---------------------------------------------------------------------------------------------
// truncate_output

bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

TEST(AgentToolsTruncate, LinesAndCharacters) {
    EXPECT_EQ(truncate_output("short\n", 100), "short\n");

    std::string lines;
    for (int i = 0; i < 1000; ++i) lines += fmt::format("line {:03}\n", i);  // 9 bytes each
    const std::string cut = truncate_output(lines, 300);
    EXPECT_LE(cut.size(), 300u);
    EXPECT_TRUE(cut.starts_with("line 000\n"));
    EXPECT_TRUE(cut.ends_with("line 999\n"));
    const size_t marker = cut.find("[... ");
    ASSERT_NE(marker, std::string::npos);
    EXPECT_EQ(cut[marker - 1], '\n');
    const size_t head_lines = size_t(std::count(cut.begin(), cut.begin() + long(marker), '\n'));
    const size_t tail_lines = size_t(std::count(cut.begin() + long(marker), cut.end(), '\n')) - 1;
    EXPECT_TRUE(contains(cut, fmt::format("[... {} bytes ({} lines) omitted ...]\n", (1000 - head_lines - tail_lines) * 9, 1000 - head_lines - tail_lines)))
        << cut;

    // Two- and three-byte characters and no newlines: the cuts fall between characters.
    for (const std::string ch : {"é", "€"}) {
        std::string text;
        for (int i = 0; i < 500; ++i) text += ch;
        for (size_t max : {101u, 102u, 103u, 200u}) {
            const std::string t = truncate_output(text, max);
            EXPECT_LE(t.size(), max);
            EXPECT_TRUE(valid_utf8(t)) << max;
            EXPECT_TRUE(contains(t, "omitted"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RunningCommand and the sandbox

struct Finished {
    std::string output;
    int status;
};

Finished run_to_end(const CommandSpec& spec, std::chrono::seconds limit = std::chrono::seconds(10)) {
    RunningCommand cmd(spec);
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (cmd.read_available(out)) {
        if (std::chrono::steady_clock::now() > deadline) cmd.kill();
        pollfd p{cmd.fd(), POLLIN, 0};
        ::poll(&p, 1, 100);
    }
    return {out, cmd.wait()};
}

TEST(AgentToolsCommand, OutputStatusAndNoLeakedFds) {
    TempDir t;
    const Finished f = run_to_end({"echo out; echo err >&2; pwd; exit 3", t.path(), false, false});
    EXPECT_EQ(f.status, 3);
    EXPECT_TRUE(contains(f.output, "out\n"));
    EXPECT_TRUE(contains(f.output, "err\n"));
    EXPECT_TRUE(contains(f.output, t.path().string()));

    // Another command's pipe must not reach this one (every fd the agent opens is CLOEXEC).
    RunningCommand other({"sleep 5", t.path(), false, false});
    const Finished g = run_to_end({fmt::format("[ -e /proc/$$/fd/{} ] && echo leaked || echo clean", other.fd()), t.path(), false, false});
    EXPECT_EQ(g.output, "clean\n");

    EXPECT_TRUE(contains(error_of([&] { RunningCommand({"true", t.path() / "missing", false, false}); }), "cannot start"));
}

// After kill(): the output ends and the status says SIGKILL, within 5 s of `start`.
void expect_killed_within_5s(RunningCommand& cmd, std::chrono::steady_clock::time_point start) {
    std::string out;
    while (cmd.read_available(out)) {
        pollfd p{cmd.fd(), POLLIN, 0};
        ::poll(&p, 1, 100);
        ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    }
    EXPECT_EQ(cmd.wait(), 128 + SIGKILL);
}

TEST(AgentToolsCommand, KillStopsTheGroup) {
    TempDir t;
    const auto start = std::chrono::steady_clock::now();
    RunningCommand cmd({"sleep 100 & sleep 100", t.path(), false, false});
    cmd.kill();
    expect_killed_within_5s(cmd, start);
}

TEST(SandboxArgv, MountOrder) {
    TempDir t;
    CommandSpec spec{"make", t.path(), false, true};
    std::vector<std::string> a = sandbox_argv(spec);
    const auto at = [&](const std::string& s) { return std::find(a.begin(), a.end(), s) - a.begin(); };
    const std::string w = t.path().string();
    EXPECT_EQ(a[0], "bwrap");
    EXPECT_LT(at("--unshare-net"), long(a.size()));
    EXPECT_LT(at("--tmpfs"), at("--bind"));
    EXPECT_EQ(a[size_t(at("--bind")) + 1], w);
    EXPECT_EQ(std::count(a.begin(), a.end(), "--ro-bind"), 1);
    EXPECT_EQ(std::vector<std::string>(a.end() - 4, a.end()), (std::vector<std::string>{"--", "/bin/sh", "-c", "make"}));

    fs::create_directory(t.path() / ".git");
    spec.allow_network = true;
    a = sandbox_argv(spec);
    EXPECT_EQ(at("--unshare-net"), long(a.size()));
    EXPECT_EQ(std::count(a.begin(), a.end(), w + "/.git"), 2);
    EXPECT_GT(at(w + "/.git"), at("--bind"));
}

#define REQUIRE_SANDBOX()                                                                  \
    do {                                                                                   \
        if (const std::string why = sandbox_problem(); !why.empty()) GTEST_SKIP() << why; \
    } while (0)

TEST(Sandbox, WorkspaceWritableRestReadOnly) {
    REQUIRE_SANDBOX();
    TempDir t;
    const fs::path ws = t.path() / "ws";
    write(ws / ".git/HEAD", "ref\n");
    write(ws / "in.txt", "data\n");
    const char* home = std::getenv("HOME");
    const std::string outside = fs::path(home && *home ? home : "/root") / ".celer-sandbox-test";

    Finished f = run_to_end({"cat in.txt && echo made > made.txt && echo err >&2 && exit 3", ws});
    EXPECT_EQ(f.status, 3) << f.output;
    EXPECT_TRUE(contains(f.output, "data\n"));
    EXPECT_TRUE(contains(f.output, "err\n"));
    EXPECT_EQ(slurp(ws / "made.txt"), "made\n");

    f = run_to_end({fmt::format("echo x > '{}'", outside), ws});
    EXPECT_NE(f.status, 0);
    EXPECT_FALSE(fs::exists(outside));
    EXPECT_NE(run_to_end({"touch /etc/celer-sandbox-test", ws}).status, 0);
    EXPECT_FALSE(fs::exists("/etc/celer-sandbox-test"));
    EXPECT_NE(run_to_end({"echo x > .git/HEAD", ws}).status, 0);
    EXPECT_EQ(slurp(ws / ".git/HEAD"), "ref\n");
    // /tmp is private: beside the workspace bound into it, the host's files are not there.
    write(t.path() / "host-only", "");
    EXPECT_NE(run_to_end({fmt::format("test -e '{}'", (t.path() / "host-only").string()), ws}).status, 0);
}

TEST(Sandbox, NetworkOffUnlessAllowed) {
    REQUIRE_SANDBOX();
    TempDir t;
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(s, 4), 0);
    socklen_t len = sizeof addr;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    const std::string cmd = fmt::format("bash -c 'echo > /dev/tcp/127.0.0.1/{}'", ntohs(addr.sin_port));
    EXPECT_NE(run_to_end({cmd, t.path()}).status, 0);
    EXPECT_EQ(run_to_end({cmd, t.path(), true}).status, 0);
    ::close(s);
}

TEST(Sandbox, KillIsPrompt) {
    REQUIRE_SANDBOX();
    TempDir t;
    const auto start = std::chrono::steady_clock::now();
    RunningCommand cmd({"sleep 100", t.path()});
    ::usleep(200'000);  // let bwrap set the sandbox up, so the kill meets the whole process tree
    cmd.kill();
    expect_killed_within_5s(cmd, start);
}

}  // namespace
}  // namespace celer::agent
