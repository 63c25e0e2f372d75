#include "service/sm/locks.h"

#include <algorithm>
#include <cstdlib>

namespace tern::sm {

std::size_t LockTable::held_or_queued(std::uint64_t session) const {
  auto it = by_session_.find(session);
  return it == by_session_.end() ? 0 : it->second.size();
}

#ifdef TERN_PLANTED_BUGS
namespace {
// Planted bug "token-reuse" (test builds only, docs/testing.md): a grant after the first repeats
// the lock's previous token instead of a larger one (and idle locks are kept, so the previous
// token is always known).
bool planted_token_reuse() {
  static const bool on = [] {
    const char* e = std::getenv("TERN_PLANTED_BUG");
    return e != nullptr && std::string(e) == "token-reuse";
  }();
  return on;
}
}  // namespace
#endif

std::uint64_t LockTable::grant_token(Lock& l, std::uint64_t index) {
#ifdef TERN_PLANTED_BUGS
  if (planted_token_reuse() && l.last_token != 0) return l.last_token;
#endif
  return next_token(l, index);
}

LockResult LockTable::acquire(const std::string& name, std::uint64_t session, bool shared, bool try_only,
                              std::int64_t delay_ms, const std::string& value, std::uint64_t index, std::int64_t now,
                              std::uint64_t* token, std::vector<Grant>* grants) {
  Lock& l = locks_[name];
  for (const auto& h : l.holders)
    if (h.session == session) {
      if (h.shared != shared) return LockResult::wrong_mode;
      *token = h.token;
      return LockResult::held;
    }
  for (const auto& w : l.queue)
    if (w.session == session) {
      if (w.shared != shared) return LockResult::wrong_mode;
      return try_only ? LockResult::busy : LockResult::queued;
    }
  bool free_now = l.queue.empty() && compatible(l, shared) && now >= l.delayed_until_ms;
#ifdef TERN_PLANTED_BUGS
  // Planted bug "double-grant" (test builds only, docs/testing.md): a try-lock ignores the
  // current holders, so two sessions hold an exclusive lock at once.
  static const bool double_grant = [] {
    const char* e = std::getenv("TERN_PLANTED_BUG");
    return e != nullptr && std::string(e) == "double-grant";
  }();
  if (double_grant && try_only) free_now = l.queue.empty() && now >= l.delayed_until_ms;
#endif
  if (!free_now && try_only) {
    forget_if_idle(name, index);
    return LockResult::busy;
  }
  if (held_or_queued(session) >= limits_.max_locks_per_session || l.queue.size() >= limits_.max_waiters_per_lock) {
    forget_if_idle(name, index);
    return LockResult::too_many;
  }
  by_session_[session].insert(name);
  if (free_now) {
    *token = grant_token(l, index);
    l.holders.push_back(Holder{session, shared, *token, delay_ms});
    if (l.holders.size() == 1) l.value = value;
    return LockResult::granted;
  }
  l.queue.push_back(Waiter{session, shared, delay_ms, value});
  (void)grants;
  return LockResult::queued;
}

void LockTable::grant_waiters(const std::string& name, Lock& l, std::uint64_t index, std::int64_t now,
                              std::vector<Grant>* grants) {
  if (now < l.delayed_until_ms) {
    delayed_.insert(name);
    return;
  }
  delayed_.erase(name);
  // FIFO: grant from the front while compatible; shared waiters go together, and an exclusive
  // waiter stops the scan (later shared ones wait behind it).
  while (!l.queue.empty() && compatible(l, l.queue.front().shared)) {
    Waiter w = std::move(l.queue.front());
    l.queue.pop_front();
    if (l.holders.empty()) l.value = w.value;
    std::uint64_t token = grant_token(l, index);
    l.holders.push_back(Holder{w.session, w.shared, token, w.delay_ms});
    grants->push_back(Grant{name, w.session, token});
    if (!w.shared) break;
  }
}

LockResult LockTable::release(const std::string& name, std::uint64_t session, std::uint64_t index, std::int64_t now,
                              std::vector<Grant>* grants) {
  auto it = locks_.find(name);
  if (it == locks_.end()) return LockResult::not_held;
  Lock& l = it->second;
  auto h = std::find_if(l.holders.begin(), l.holders.end(), [&](const Holder& x) { return x.session == session; });
  auto w = std::find_if(l.queue.begin(), l.queue.end(), [&](const Waiter& x) { return x.session == session; });
  if (h == l.holders.end() && w == l.queue.end()) return LockResult::not_held;
  if (h != l.holders.end()) l.holders.erase(h);
  if (w != l.queue.end()) l.queue.erase(w);
  if (auto s = by_session_.find(session); s != by_session_.end()) {
    s->second.erase(name);
    if (s->second.empty()) by_session_.erase(s);
  }
  grant_waiters(name, l, index, now, grants);
  forget_if_idle(name, index);
  return LockResult::granted;
}

void LockTable::on_session_end(std::uint64_t session, bool expired, std::uint64_t index, std::int64_t now,
                               std::vector<Grant>* grants) {
  auto s = by_session_.find(session);
  if (s == by_session_.end()) return;
  std::set<std::string> names = std::move(s->second);
  by_session_.erase(s);
  for (const auto& name : names) {
    Lock& l = locks_.at(name);
    auto h = std::find_if(l.holders.begin(), l.holders.end(), [&](const Holder& x) { return x.session == session; });
    if (h != l.holders.end()) {
      if (expired && h->delay_ms > 0) {
        std::int64_t until;  // delays are bounded by the state machine; saturate all the same
        if (__builtin_add_overflow(now, h->delay_ms, &until)) until = INT64_MAX;
        l.delayed_until_ms = std::max(l.delayed_until_ms, until);
      }
      l.holders.erase(h);
    }
    l.queue.erase(std::remove_if(l.queue.begin(), l.queue.end(), [&](const Waiter& w) { return w.session == session; }),
                  l.queue.end());
    grant_waiters(name, l, index, now, grants);
    forget_if_idle(name, index);
  }
}

void LockTable::on_time(std::uint64_t index, std::int64_t now, std::vector<Grant>* grants) {
  // Every grant from this entry on gets a token >= index, so an idle lock whose last token is
  // below it needs no memory. Entries for locks taken again since are just dropped.
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto l = locks_.find(*it);
    bool idle = l != locks_.end() && l->second.holders.empty() && l->second.queue.empty() && !delayed_.count(*it);
    if (idle && l->second.last_token >= index) {
      ++it;
      continue;
    }
    if (idle) locks_.erase(l);
    it = idle_.erase(it);
  }
  std::vector<std::string> due;
  for (const auto& name : delayed_)
    if (now >= locks_.at(name).delayed_until_ms) due.push_back(name);
  for (const auto& name : due) {
    grant_waiters(name, locks_.at(name), index, now, grants);
    forget_if_idle(name, index);
  }
}

bool LockTable::set_value(const std::string& name, std::uint64_t session, const std::string& value) {
  auto it = locks_.find(name);
  if (it == locks_.end() || it->second.holders.empty() || it->second.holders.front().session != session) return false;
  it->second.value = value;
  return true;
}

void LockTable::forget_if_idle(const std::string& name, std::uint64_t index) {
  auto it = locks_.find(name);
  if (it == locks_.end() || !it->second.holders.empty() || !it->second.queue.empty() || delayed_.count(name)) return;
#ifdef TERN_PLANTED_BUGS
  if (planted_token_reuse()) return;
#endif
  // A lock-delay that has passed needs no memory either. The last token does while it is >= the
  // entry index: a new lock's first grant (later in this entry, or in the next entries if this
  // one granted it several times) would get the index and could repeat it.
  if (it->second.last_token < index) {
    locks_.erase(it);
    idle_.erase(name);
  } else {
    idle_.insert(name);
  }
}

bool LockTable::check_token(const std::string& name, std::uint64_t token) const {
  auto it = locks_.find(name);
  if (it == locks_.end()) return false;
  for (const auto& h : it->second.holders)
    if (h.token == token) return true;
  return false;
}

const LockTable::Lock* LockTable::find(const std::string& name) const {
  auto it = locks_.find(name);
  return it == locks_.end() ? nullptr : &it->second;
}

void LockTable::encode(Writer& w) const {
  w.u64(locks_.size());
  for (const auto& [name, l] : locks_) {
    w.str(name);
    w.i64(l.delayed_until_ms);
    w.str(l.value);
    w.u64(l.last_token);
    w.u32(static_cast<std::uint32_t>(l.holders.size()));
    for (const auto& h : l.holders) {
      w.u64(h.session);
      w.u8(h.shared ? 1 : 0);
      w.u64(h.token);
      w.i64(h.delay_ms);
    }
    w.u32(static_cast<std::uint32_t>(l.queue.size()));
    for (const auto& q : l.queue) {
      w.u64(q.session);
      w.u8(q.shared ? 1 : 0);
      w.i64(q.delay_ms);
      w.str(q.value);
    }
  }
}

bool LockTable::decode(Reader& r) {
  LockTable fresh(limits_);
  std::uint64_t n = r.u64();
  if (!r.ok() || n > r.left()) return false;
  for (std::uint64_t i = 0; i < n; ++i) {
    std::string name = r.str();
    Lock& l = fresh.locks_[name];
    l.delayed_until_ms = r.i64();
    l.value = r.str();
    l.last_token = r.u64();
    std::uint32_t nh = r.u32();
    if (!r.ok() || nh > r.left()) return false;
    for (std::uint32_t k = 0; k < nh; ++k) {
      Holder h{r.u64(), r.u8() == 1, r.u64(), r.i64()};
      if (h.token > l.last_token) return false;  // tokens are issued from last_token
      l.holders.push_back(h);
      fresh.by_session_[h.session].insert(name);
    }
    std::uint32_t nq = r.u32();
    if (!r.ok() || nq > r.left()) return false;
    for (std::uint32_t k = 0; k < nq; ++k) {
      Waiter q;
      q.session = r.u64();
      q.shared = r.u8() == 1;
      q.delay_ms = r.i64();
      q.value = r.str();
      l.queue.push_back(q);
      fresh.by_session_[q.session].insert(name);
    }
    if (l.delayed_until_ms > 0) fresh.delayed_.insert(name);
    else if (l.holders.empty() && l.queue.empty()) fresh.idle_.insert(name);
  }
  if (!r.ok()) return false;
  *this = std::move(fresh);
  return true;
}

}  // namespace tern::sm
