#include "core/communicator.h"

#include <cstdlib>

#include "core/error.h"

namespace lora {

#ifdef LORA_WITH_MPI
std::unique_ptr<Communicator> mpi_world_communicator(const CommunicatorOptions& options);  // mpi_communicator.cpp
#endif

namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, size_t, const std::string&) override {}
  void allreduce_sum(double*, size_t, const std::string&) override {}
  void broadcast(void*, size_t, const std::string&) override {}
  std::vector<uint64_t> allgather(uint64_t value, const std::string&) override { return {value}; }
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

}  // namespace

std::unique_ptr<Communicator> local_communicator() { return std::make_unique<LocalCommunicator>(); }

bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"); }

bool mpi_built_in() {
#ifdef LORA_WITH_MPI
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> world_communicator(const CommunicatorOptions& options) {
  if (!launched_by_mpirun()) return local_communicator();
#ifdef LORA_WITH_MPI
  return mpi_world_communicator(options);
#else
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE") ? std::getenv("OMPI_COMM_WORLD_SIZE") : std::getenv("PMI_SIZE");
  if (std::atoi(size) > 1)
    fail("started by mpirun with {} processes, but this lora was built without MPI: each would train alone. Install "
         "libopenmpi-dev and rebuild, or run one process", size);
  return local_communicator();
#endif
}

}  // namespace lora
