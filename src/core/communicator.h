#pragma once
// The processes of one data-parallel run, as MPI numbers them: rank() of size(), with the few collective
// operations training needs. Every rank must call the same collectives in the same order.
//
//   std::unique_ptr<Communicator> world = world_communicator({.timeout_seconds = 300});
//   world->allreduce_sum(grad, n, "the gradients of step 12");   // Σ over the ranks, on every rank
//
// Without mpirun (or in a build without MPI) the world is this process alone: size() is 1 and every
// collective returns at once. Under mpirun, a collective that waits longer than the timeout for the other
// ranks (one died or hangs) ends the whole run with a message naming what it waited for and the ranks that
// do not answer, so that no rank ever hangs; Open MPI's mpirun itself stops the run when a rank dies and
// names that rank.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lora {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool is_root() const { return rank() == 0; }

  // Element-wise sum over the ranks, in place; every rank gets the same result. `what` names the
  // operation in a timeout message.
  virtual void allreduce_sum(float* data, size_t n, const std::string& what) = 0;
  virtual void allreduce_sum(double* data, size_t n, const std::string& what) = 0;
  // Rank 0's bytes, copied to every other rank.
  virtual void broadcast(void* data, size_t bytes, const std::string& what) = 0;
  // Every rank's value, indexed by rank, on every rank.
  virtual std::vector<uint64_t> allgather(uint64_t value, const std::string& what) = 0;
  // Ends every rank of the run with exit status `code`: after an error that this rank alone may have
  // hit, where the others would wait for it forever.
  [[noreturn]] virtual void abort(int code) = 0;
  // How long a collective may wait for the other ranks from now on (CommunicatorOptions::timeout_seconds).
  virtual void set_timeout(double seconds) {}
};

struct CommunicatorOptions {
  double timeout_seconds = 300;  // a collective waiting longer than this for the other ranks ends the run
};

// This process alone: size 1, collectives that do nothing.
std::unique_ptr<Communicator> local_communicator();
// MPI_COMM_WORLD when this process was started by mpirun (and MPI is built in), else the local one.
// Initializes MPI on first use; MPI is finalized when the communicator is destroyed.
std::unique_ptr<Communicator> world_communicator(const CommunicatorOptions& options = {});

// mpirun's environment is present (OMPI_COMM_WORLD_SIZE from Open MPI, PMI_SIZE from MPICH/Hydra).
bool launched_by_mpirun();
// This build can train across processes (configured with MPI).
bool mpi_built_in();

}  // namespace lora
