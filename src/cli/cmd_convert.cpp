#include "cli/commands.h"
#include "core/error.h"

namespace lora::cli {

// Placeholder until this command is implemented; it refuses to run rather than pretend.
void register_convert(CLI::App& app) {
  app.add_subcommand("convert", "(not implemented yet)")->callback([] { fail("'convert' is not implemented yet"); });
}

}  // namespace lora::cli
