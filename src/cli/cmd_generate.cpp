#include "cli/commands.h"
#include "core/error.h"

namespace lora::cli {

// Placeholder until this command is implemented; it refuses to run rather than pretend.
void register_generate(CLI::App& app) {
  app.add_subcommand("generate", "(not implemented yet)")->callback([] { fail("'generate' is not implemented yet"); });
}

}  // namespace lora::cli
