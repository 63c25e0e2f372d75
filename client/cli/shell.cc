#include "client/cli/shell.h"

#include <unistd.h>

#include <editline/readline.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace tern::cli {
namespace {

const ShellHooks* g_hooks = nullptr;  // for libedit's C callbacks (one shell per process)

constexpr const char* kCommands[] = {"get",   "put",  "set",   "create", "rm",          "ls",     "stat",
                                     "tree",  "txn",  "watch", "lock",   "elect",       "lease",  "check-token",
                                     "status", "member", "leader", "exit", "quit", "help"};

std::vector<std::string> g_matches;
std::size_t g_next = 0;

char* next_match(const char*, int state) {
  if (state == 0) g_next = 0;
  if (g_next >= g_matches.size()) return nullptr;
  return ::strdup(g_matches[g_next++].c_str());
}

// Commands for the first word; for a word starting with '/', the children of its directory.
char** complete(const char* text, int start, int) {
  g_matches.clear();
  std::string t = text;
  if (start == 0) {
    for (const char* c : kCommands)
      if (std::strncmp(c, text, t.size()) == 0) g_matches.emplace_back(c);
  } else if (!t.empty() && t[0] == '/' && g_hooks != nullptr) {
    auto slash = t.rfind('/');
    std::string dir = slash == 0 ? "/" : t.substr(0, slash);
    std::string prefix = t.substr(slash + 1);
    for (const auto& n : g_hooks->children(dir))
      if (n.compare(0, prefix.size(), prefix) == 0) g_matches.push_back((dir == "/" ? "/" : dir + "/") + n);
  }
  rl_attempted_completion_over = 1;  // no file-name completion
  return g_matches.empty() ? nullptr : rl_completion_matches(text, next_match);
}

std::string history_file() {
  const char* home = std::getenv("HOME");
  return home != nullptr ? std::string(home) + "/.tern_history" : std::string();
}

}  // namespace

bool split_words(const std::string& line, std::vector<std::string>& words) {
  words.clear();
  std::string w;
  bool in_word = false;
  char quote = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < line.size()) w += line[++i];
      else w += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < line.size()) {
      w += line[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(w);
      w.clear();
      in_word = false;
    } else {
      w += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(w);
  return quote == 0;
}

int shell_loop(const ShellHooks& hooks) {
  g_hooks = &hooks;
  const bool interactive = ::isatty(0) != 0;
  auto history = history_file();
  if (interactive) {
    rl_readline_name = "tern";
    rl_attempted_completion_function = complete;
    using_history();
    if (!history.empty()) read_history(history.c_str());
    std::printf("tern shell: one session for every command (ephemerals live until you leave); "
                "Tab completes commands and paths; exit or Ctrl-D leaves\n");
  }
  int last = 0;
  for (std::size_t n = 0;; ++n) {
    std::string line;
    if (interactive) {
      char* raw = readline("tern> ");
      if (raw == nullptr) break;
      line = raw;
      std::free(raw);
    } else if (!std::getline(std::cin, line)) {
      break;
    }
    std::vector<std::string> words;
    if (!split_words(line, words)) {
      std::fprintf(stderr, "tern: unterminated quote\n");
      last = 2;
      continue;
    }
    if (words.empty() || words[0][0] == '#') continue;
    if (interactive) add_history(line.c_str());
    if (words[0] == "exit" || words[0] == "quit") break;
    if (words[0] == "help") words = {"--help"};
    last = hooks.run(words);
  }
  if (interactive && !history.empty()) write_history(history.c_str());
  g_hooks = nullptr;
  return interactive ? 0 : last;
}

}  // namespace tern::cli
