// Stored responses (Responses API, `store: true`): the response object a client may fetch again
// and the conversation items a later `previous_response_id` continues from. Kept in SQLite so
// that they survive a restart; an in-memory database when no path is given. Thread-safe.
#pragma once

#include <mutex>
#include <optional>
#include <string>

struct sqlite3;

namespace celer::server {

class ResponseStore {
public:
    // path "" or ":memory:": nothing on disk. Throws celer::Error if the file cannot be opened.
    explicit ResponseStore(const std::string& path);
    ~ResponseStore();
    ResponseStore(const ResponseStore&) = delete;
    ResponseStore& operator=(const ResponseStore&) = delete;

    struct Record {
        std::string response;  // the response object, JSON
        std::string context;   // every item of the conversation through this response, JSON list
    };
    void put(const std::string& id, const Record& r);
    std::optional<Record> get(const std::string& id);
    bool erase(const std::string& id);

private:
    std::mutex mu_;
    sqlite3* db_ = nullptr;
};

}  // namespace celer::server
