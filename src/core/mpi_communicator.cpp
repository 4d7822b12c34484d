// MPI_COMM_WORLD behind the Communicator interface (compiled only when CMake found MPI).
//
// A blocking MPI collective waits forever for a rank that hangs, and on a launcher that does not clean up,
// for one that died. So every collective here is watched: it tells a watchdog thread when it starts and
// ends waiting, and the watchdog ends the whole run (MPI_Abort) once a wait passes the timeout, naming the
// ranks that hold it up. The collectives themselves stay the plain blocking calls, the fastest MPI has.
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

#include <fmt/format.h>

#include "core/communicator.h"
#include "core/error.h"

namespace lora {

namespace {

using Clock = std::chrono::steady_clock;

// Watches this rank's collectives and, when one waits past the timeout, stops the run. Before that it holds a
// roll call on a communicator of its own, answered by the other ranks' watchdogs (which poll for it a few times
// a second): the message then names the ranks that do not answer (dead, stopped, or cut off) and says what the
// others are doing, so that the rank that hangs is the one named. Without MPI_THREAD_MULTIPLE this thread
// makes no MPI call: no roll call, and _exit instead of MPI_Abort (mpirun then ends the others).
class Watchdog {
 public:
  Watchdog(double timeout_seconds, int rank, int size, MPI_Comm control)
      : rank_(rank), size_(size), control_(control), last_end_(Clock::now()) {
    set_timeout(timeout_seconds);
    if (control_ != MPI_COMM_NULL) post_query();
    thread_ = std::thread([this] { run(); });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_one();
    thread_.join();
    if (control_ != MPI_COMM_NULL) {
      MPI_Cancel(&query_);
      MPI_Wait(&query_, MPI_STATUS_IGNORE);
    }
  }

  void set_timeout(double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    timeout_ = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
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
  static constexpr int kQueryTag = 1, kReplyTag = 2;
  static constexpr size_t kReplyBytes = 256;
  static constexpr auto kPoll = std::chrono::milliseconds(200);

  void begin(const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting_ = true;
    what_ = what;
    since_ = Clock::now();
  }
  void end() {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting_ = false;
    last_end_ = Clock::now();
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      changed_.wait_for(lock, kPoll, [&] { return stop_; });
      if (stop_) break;
      if (control_ != MPI_COMM_NULL) answer_roll_call();
      if (waiting_ && Clock::now() - since_ >= timeout_) fire();
    }
  }

  // Where this rank is, for another rank's roll call (the mutex held).
  std::string status() const {
    const auto seconds = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
    if (waiting_) return fmt::format("waits for the others in {} ({:.0f} s)", what_, seconds(since_));
    return fmt::format("computes, in no collective for {:.0f} s{}", seconds(last_end_),
                       what_.empty() ? std::string() : " (the last one: " + what_ + ")");
  }

  void post_query() { MPI_Irecv(&query_byte_, 1, MPI_CHAR, MPI_ANY_SOURCE, kQueryTag, control_, &query_); }

  void answer_roll_call() {
    int asked = 0;
    MPI_Status from;
    MPI_Test(&query_, &asked, &from);
    if (!asked) return;
    std::string reply = status();
    reply.resize(kReplyBytes - 1);
    reply.push_back('\0');
    MPI_Send(reply.data(), int(kReplyBytes), MPI_CHAR, from.MPI_SOURCE, kReplyTag, control_);
    post_query();
  }

  // Asks every other rank where it is and waits up to 3 s for the answers: one line per rank.
  std::string roll_call() {
    std::vector<MPI_Request> replies(size_t(size_), MPI_REQUEST_NULL), queries(size_t(size_), MPI_REQUEST_NULL);
    std::vector<std::vector<char>> text(size_t(size_), std::vector<char>(kReplyBytes, 0));
    char query = 1;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      MPI_Irecv(text[size_t(r)].data(), int(kReplyBytes), MPI_CHAR, r, kReplyTag, control_, &replies[size_t(r)]);
      MPI_Isend(&query, 1, MPI_CHAR, r, kQueryTag, control_, &queries[size_t(r)]);
    }
    std::vector<bool> answered(size_t(size_), false);
    const Clock::time_point until = Clock::now() + std::chrono::seconds(3);
    for (int missing = size_ - 1; missing > 0 && Clock::now() < until;) {
      answer_roll_call();  // another rank may be holding its own roll call
      for (int r = 0; r < size_; ++r) {
        int done = 0;
        if (r != rank_ && !answered[size_t(r)]) MPI_Test(&replies[size_t(r)], &done, MPI_STATUS_IGNORE);
        if (done) answered[size_t(r)] = true, --missing;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::string lines;
    for (int r = 0; r < size_; ++r)
      if (r != rank_)
        lines += fmt::format("\n  rank {}: {}", r, answered[size_t(r)] ? text[size_t(r)].data()
                                                                       : "does not answer (dead, stopped or cut off)");
    return lines;
  }

  [[noreturn]] void fire() {
    const double seconds = std::chrono::duration<double>(timeout_).count();
    const std::string ranks = control_ != MPI_COMM_NULL ? roll_call() : "";
    std::fprintf(stderr,
                 "error: rank %d of %d: %s got no answer from the other ranks within %.0f s; stopping every rank "
                 "(raise --mpi-timeout if a rank is only slow)%s\n",
                 rank_, size_, what_.c_str(), seconds, ranks.c_str());
    std::fflush(stderr);
    if (control_ != MPI_COMM_NULL) MPI_Abort(MPI_COMM_WORLD, 1);
    ::_exit(1);
  }

  Clock::duration timeout_{};
  const int rank_, size_;
  const MPI_Comm control_;  // MPI_COMM_NULL: this thread makes no MPI call
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stop_ = false, waiting_ = false;
  std::string what_;
  Clock::time_point since_, last_end_;
  MPI_Request query_ = MPI_REQUEST_NULL;
  char query_byte_ = 0;
  std::thread thread_;
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
    if (provided == MPI_THREAD_MULTIPLE) MPI_Comm_dup(MPI_COMM_WORLD, &control_);  // the watchdogs' roll calls
    watchdog_ = std::make_unique<Watchdog>(options.timeout_seconds, rank_, size_, control_);
  }
  ~MpiCommunicator() override {
    watchdog_.reset();
    if (control_ != MPI_COMM_NULL) MPI_Comm_free(&control_);
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

  void set_timeout(double seconds) override { watchdog_->set_timeout(seconds); }

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
  MPI_Comm control_ = MPI_COMM_NULL;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> mpi_world_communicator(const CommunicatorOptions& options) {
  return std::make_unique<MpiCommunicator>(options);
}

}  // namespace lora
