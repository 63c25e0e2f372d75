#pragma once
// LockTable: named locks held on the server (design.md §4), and the elections built on them.
// Deterministic, std only; owned by the StateMachine and replicated with it.
//
// - Exclusive and shared (read/write) locks with a fair FIFO queue per lock: a release grants
//   the next waiter(s) directly (consecutive shared waiters together; a shared request never
//   jumps ahead of a queued exclusive one), so waiters never race (no herd effect).
// - Fencing tokens: every grant (shared ones included) gets max(entry index, the lock's last
//   token + 1), so a lock's tokens strictly increase even when one entry grants it several times
//   (a release or an expiry hands it on, and the new holder's session ends in the same entry).
//   A token is valid only while its holder holds the lock. A lock nobody holds or waits for is
//   kept (idle) while its last token is not below the entry index, so no later grant repeats it.
// - try-lock fails with `busy` instead of queueing.
// - When a holder's session expires (not when it is closed), the lock can carry a lock-delay
//   (Chubby): no one is granted it until the delay has passed in cluster time.
// - An election is an exclusive lock whose holder is the leader and carries a value: campaign
//   queues, resign releases, proclaim changes the value while holding it.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "service/sm/codec.h"

namespace tern::sm {

struct Grant {
  std::string name;
  std::uint64_t session = 0;
  std::uint64_t token = 0;
  bool operator==(const Grant&) const = default;
};

// `held`: the session already held the lock in the mode asked (nothing changed). `wrong_mode`:
// it holds or waits for the lock in the other mode; there are no upgrades or downgrades (two
// shared holders both upgrading would deadlock), so it must release and ask again.
enum class LockResult : std::uint8_t { granted, held, queued, busy, too_many, not_held, wrong_mode };

struct LockLimits {
  std::size_t max_waiters_per_lock = 10000;
  std::size_t max_locks_per_session = 1000;
};

class LockTable {
 public:
  struct Holder {
    std::uint64_t session = 0;
    bool shared = false;
    std::uint64_t token = 0;
    std::int64_t delay_ms = 0;  // lock-delay if this holder's session expires
  };
  struct Waiter {
    std::uint64_t session = 0;
    bool shared = false;
    std::int64_t delay_ms = 0;
    std::string value;
  };
  struct Lock {
    std::vector<Holder> holders;
    std::deque<Waiter> queue;
    std::int64_t delayed_until_ms = 0;
    std::string value;  // elections: the leader's value
    std::uint64_t last_token = 0;  // the newest token granted; the next one is larger
  };

  explicit LockTable(LockLimits limits = {}) : limits_(limits) {}

  // Acquire (or queue for) `name`. On `granted`, *token is the new token. Re-acquiring a held lock
  // in the same mode is `held`, with its existing token in *token; a second request while queued
  // in the same mode is `queued` again (not queued twice); either in the other mode is
  // `wrong_mode` (nothing changes).
  LockResult acquire(const std::string& name, std::uint64_t session, bool shared, bool try_only, std::int64_t delay_ms,
                     const std::string& value, std::uint64_t index, std::int64_t now, std::uint64_t* token,
                     std::vector<Grant>* grants);
  // Release a held lock or withdraw a queued request.
  LockResult release(const std::string& name, std::uint64_t session, std::uint64_t index, std::int64_t now,
                     std::vector<Grant>* grants);
  // The session ended: drop its holds and requests; `expired` applies lock-delays.
  void on_session_end(std::uint64_t session, bool expired, std::uint64_t index, std::int64_t now, std::vector<Grant>* grants);
  // Called first for every entry: grant locks whose lock-delay has passed, and drop idle locks
  // whose last token is below `index` (a grant from now on gets a larger token anyway).
  void on_time(std::uint64_t index, std::int64_t now, std::vector<Grant>* grants);
  bool set_value(const std::string& name, std::uint64_t session, const std::string& value);

  // Is `token` the token of a current holder of `name`? (Tokens are unique per lock.)
  bool check_token(const std::string& name, std::uint64_t token) const;
  std::set<std::string> names_of(std::uint64_t session) const {
    auto it = by_session_.find(session);
    return it == by_session_.end() ? std::set<std::string>{} : it->second;
  }
  const Lock* find(const std::string& name) const;
  const std::map<std::string, Lock>& locks() const { return locks_; }

  void encode(Writer& w) const;
  bool decode(Reader& r);

 private:
  static bool compatible(const Lock& l, bool shared) {
    return l.holders.empty() || (shared && l.holders.front().shared);
  }
  void grant_waiters(const std::string& name, Lock& l, std::uint64_t index, std::int64_t now, std::vector<Grant>* grants);
  static std::uint64_t next_token(Lock& l, std::uint64_t index) {
    l.last_token = std::max(index, l.last_token + 1);
    return l.last_token;
  }
  // next_token, except in a planted-bug build (docs/testing.md).
  static std::uint64_t grant_token(Lock& l, std::uint64_t index);
  void forget_if_idle(const std::string& name, std::uint64_t index);
  std::size_t held_or_queued(std::uint64_t session) const;

  LockLimits limits_;
  std::map<std::string, Lock> locks_;
  std::map<std::uint64_t, std::set<std::string>> by_session_;  // session -> locks it holds or waits for
  std::set<std::string> delayed_;                                // locks under a lock-delay
  std::set<std::string> idle_;  // locks kept only for their last token (see on_time); may be stale
};

}  // namespace tern::sm
