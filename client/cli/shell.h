#pragma once
// The interactive shell of `tern` (docs/cli.md, Shell): libedit line editing, history in
// ~/.tern_history, completion of commands and node paths. On a pipe it reads plain lines without
// prompts (scripts, tests).
#include <functional>
#include <string>
#include <vector>

namespace tern::cli {

struct ShellHooks {
  std::function<int(const std::vector<std::string>& words)> run;              // one command
  std::function<std::vector<std::string>(const std::string& dir)> children;  // for completion
};

// Splits a line into words: whitespace separates, '...' and "..." quote, backslash escapes.
// false on an unterminated quote.
bool split_words(const std::string& line, std::vector<std::string>& words);

// Reads and runs lines until end of input or `exit`/`quit`; 0, or the last command's status
// when reading from a pipe (so a script sees a failure).
int shell_loop(const ShellHooks& hooks);

}  // namespace tern::cli
