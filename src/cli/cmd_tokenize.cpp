#include "cli/commands.h"
#include "core/error.h"

namespace lora::cli {

// Placeholder until this command is implemented; it refuses to run rather than pretend.
void register_tokenize(CLI::App& app) {
  app.add_subcommand("tokenize", "(not implemented yet)")->callback([] { fail("'tokenize' is not implemented yet"); });
}

}  // namespace lora::cli
