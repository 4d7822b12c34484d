#include "cli/commands.h"
#include "core/error.h"

namespace lora::cli {

// Placeholder until this command is implemented; it refuses to run rather than pretend.
void register_info(CLI::App& app) {
  app.add_subcommand("info", "(not implemented yet)")->callback([] { fail("'info' is not implemented yet"); });
}

}  // namespace lora::cli
