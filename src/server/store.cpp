#include "server/store.h"

#include <ctime>

#include <fmt/format.h>
#include <sqlite3.h>

#include "util/error.h"

namespace celer::server {
namespace {

// A prepared statement, finalised on every path.
class Stmt {
public:
    Stmt(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) throw Error(fmt::format("response store: {}", sqlite3_errmsg(db)));
    }
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    void bind(int i, const std::string& v) { sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT); }
    void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
    bool step() {
        const int rc = sqlite3_step(s_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw Error(fmt::format("response store: {}", sqlite3_errmsg(db_)));
    }
    std::string text(int col) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
        return p ? std::string(p, size_t(sqlite3_column_bytes(s_, col))) : std::string();
    }

private:
    sqlite3* db_;
    sqlite3_stmt* s_ = nullptr;
};

}  // namespace

ResponseStore::ResponseStore(const std::string& path) {
    const std::string p = path.empty() ? ":memory:" : path;
    if (sqlite3_open_v2(p.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
        const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        throw Error(fmt::format("{}: cannot open the response store: {}", p, msg));
    }
    sqlite3_busy_timeout(db_, 5000);
    char* err = nullptr;
    // WAL: a crash mid-write loses at most the response being written, never earlier ones.
    const char* schema =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL,"
        " response TEXT NOT NULL, context TEXT NOT NULL);";
    if (sqlite3_exec(db_, schema, nullptr, nullptr, &err) != SQLITE_OK) {
        const std::string msg = err ? err : "unknown error";
        sqlite3_free(err);
        sqlite3_close(db_);
        throw Error(fmt::format("{}: cannot set up the response store: {}", p, msg));
    }
}

ResponseStore::~ResponseStore() { sqlite3_close(db_); }

void ResponseStore::put(const std::string& id, const Record& r) {
    std::lock_guard lock(mu_);
    Stmt s(db_, "INSERT OR REPLACE INTO responses (id, created_at, response, context) VALUES (?, ?, ?, ?)");
    s.bind(1, id);
    s.bind(2, int64_t(std::time(nullptr)));
    s.bind(3, r.response);
    s.bind(4, r.context);
    s.step();
}

std::optional<ResponseStore::Record> ResponseStore::get(const std::string& id) {
    std::lock_guard lock(mu_);
    Stmt s(db_, "SELECT response, context FROM responses WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return Record{s.text(0), s.text(1)};
}

bool ResponseStore::erase(const std::string& id) {
    std::lock_guard lock(mu_);
    Stmt s(db_, "DELETE FROM responses WHERE id = ?");
    s.bind(1, id);
    s.step();
    return sqlite3_changes(db_) > 0;
}

}  // namespace celer::server
