// MPI_COMM_WORLD behind the Communicator interface (compiled only when CMake found MPI).
//
// A blocking MPI collective waits forever for a rank that hangs, and on a launcher that does not clean up,
// for one that died. So every collective here is watched: it tells a watchdog thread when it starts and
// ends waiting, and the watchdog ends the whole run (MPI_Abort) once a wait passes the timeout. The
// collectives themselves stay the plain blocking calls, the fastest MPI has.
// The C API only: Open MPI's and MPICH's deprecated C++ bindings would need their own library.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "core/communicator.h"
#include "core/error.h"

namespace lora {

namespace {

using Clock = std::chrono::steady_clock;

class Watchdog {
 public:
  Watchdog(double timeout_seconds, int rank, int size, bool may_abort)
      : timeout_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_seconds))),
        rank_(rank), size_(size), may_abort_(may_abort), thread_([this] { run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }

  // While a Watch lives, this rank waits in a collective.
  class Watch {
   public:
    Watch(Watchdog& w, const std::string& what) : w_(w) { w_.begin(what); }
    ~Watch() { w_.end(); }

   private:
    Watchdog& w_;
  };

 private:
  void begin(const std::string& what) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      waiting_ = true;
      what_ = what;
      since_ = Clock::now();
    }
    changed_.notify_one();
  }
  void end() {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting_ = false;
    ++finished_;
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      if (!waiting_) {
        changed_.wait(lock);
        continue;
      }
      const uint64_t watched = finished_;
      const Clock::time_point deadline = since_ + timeout_;
      changed_.wait_until(lock, deadline, [&] { return stop_ || finished_ != watched; });
      if (!stop_ && finished_ == watched && Clock::now() >= deadline) fire();
    }
  }

  [[noreturn]] void fire() {
    const double seconds = std::chrono::duration<double>(timeout_).count();
    std::fprintf(stderr,
                 "error: rank %d of %d: %s got no answer from the other ranks within %.0f s (a rank died, hangs, or "
                 "is that far behind; raise --mpi-timeout if it is only slow); stopping every rank\n",
                 rank_, size_, what_.c_str(), seconds);
    std::fflush(stderr);
    if (may_abort_) MPI_Abort(MPI_COMM_WORLD, 1);
    ::_exit(1);  // without MPI_THREAD_MULTIPLE, no MPI call from this thread: mpirun ends the others
  }

  const Clock::duration timeout_;
  const int rank_, size_;
  const bool may_abort_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stop_ = false, waiting_ = false;
  uint64_t finished_ = 0;
  std::string what_;
  Clock::time_point since_;
  std::thread thread_;  // last: starts once everything above exists
};

void check(int rc, const char* call, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char message[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, message, &len);
  fail("{} failed in {}: {}", call, what, std::string(message, size_t(len)));
}

// MPI counts are ints: larger buffers go in pieces.
constexpr size_t kMaxCount = size_t(1) << 30;

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const CommunicatorOptions& options) {
    int initialized = 0, provided = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
      owns_mpi_ = true;
    } else {
      MPI_Query_thread(&provided);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);  // failures become lora::Error
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    watchdog_ = std::make_unique<Watchdog>(options.timeout_seconds, rank_, size_, provided == MPI_THREAD_MULTIPLE);
  }
  ~MpiCommunicator() override {
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_mpi_ && !finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, size_t n, const std::string& what) override { allreduce(data, n, MPI_FLOAT, what); }
  void allreduce_sum(double* data, size_t n, const std::string& what) override { allreduce(data, n, MPI_DOUBLE, what); }

  void broadcast(void* data, size_t bytes, const std::string& what) override {
    Watchdog::Watch watch(*watchdog_, what);
    for (size_t done = 0; done < bytes; done += kMaxCount) {
      const int count = int(std::min(kMaxCount, bytes - done));
      check(MPI_Bcast(static_cast<char*>(data) + done, count, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast", what);
    }
  }

  std::vector<uint64_t> allgather(uint64_t value, const std::string& what) override {
    Watchdog::Watch watch(*watchdog_, what);
    std::vector<uint64_t> all(size_t(size_), 0);
    check(MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather", what);
    return all;
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
    ::_exit(code);
  }

 private:
  template <typename T>
  void allreduce(T* data, size_t n, MPI_Datatype type, const std::string& what) {
    Watchdog::Watch watch(*watchdog_, what);
    for (size_t done = 0; done < n; done += kMaxCount) {
      const int count = int(std::min(kMaxCount, n - done));
      check(MPI_Allreduce(MPI_IN_PLACE, data + done, count, type, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce", what);
    }
  }

  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> mpi_world_communicator(const CommunicatorOptions& options) {
  return std::make_unique<MpiCommunicator>(options);
}

}  // namespace lora
