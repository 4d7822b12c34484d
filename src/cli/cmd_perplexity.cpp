#include "cli/commands.h"
#include "core/error.h"

namespace lora::cli {

// Placeholder until this command is implemented; it refuses to run rather than pretend.
void register_perplexity(CLI::App& app) {
  app.add_subcommand("perplexity", "(not implemented yet)")->callback([] { fail("'perplexity' is not implemented yet"); });
}

}  // namespace lora::cli
