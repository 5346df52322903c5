// The thread pool behind parallel_blocks (common.h): runs f(begin, end) over chunks of
// [0, units) on the calling thread plus num_threads() - 1 workers.
//
// Why not `#pragma omp parallel`: an OpenMP region ends in a barrier that waits for every
// thread of the team to arrive, including a worker the OS has not yet scheduled. On a small
// machine shared with other processes (or with OpenBLAS's threads) that wait is a scheduler
// time slice: kernels of 0.2 ms took 7 to 30 ms with two OpenMP threads under load. Here
// the calling thread never waits for a worker that has not started: chunks (4 per thread)
// are claimed from one atomic counter, the caller claims them too, and it waits only for
// chunks already claimed. A late worker finds nothing left and goes back to sleep, so the
// worst case is the serial time, not a stall. Idle workers sleep on a condition variable
// (no spinning), leaving the cores to Python, NumPy and BLAS between kernels.
//
// The job's generation number and the next chunk index share one 64-bit atomic, so a worker
// still holding an old job can never claim a chunk of a newer one. Jobs are serialized (one
// at a time, callers queue on a mutex). After fork() the child builds a fresh pool.
// build_info() (also here) reports how the extension was compiled.
#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common.h"
#include "kernels.h"

namespace pydl {
namespace {

class Pool {
 public:
  explicit Pool(int threads) : threads_(std::max(1, threads)) {}

  int threads() const { return threads_; }

  void run(index_t units, ChunkFn fn, void* ctx) {
    std::lock_guard<std::mutex> one_job(run_mu_);
    start_workers();
    const index_t chunks = std::min<index_t>(units, index_t(threads_) * 4);
    std::uint32_t gen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      gen = ++gen_;
      job_ = Job{fn, ctx, units, chunks};
      done_.store(0, std::memory_order_relaxed);
      state_.store(std::uint64_t(gen) << 32, std::memory_order_release);
    }
    cv_.notify_all();
    work(gen, job_);
    // Only chunks that some worker has claimed can still be running.
    for (int spins = 0; done_.load(std::memory_order_acquire) < chunks; ++spins)
      if (spins > 64) std::this_thread::yield();
  }

  // Stops the workers (they finish nothing new) and detaches them; used when replaced.
  void retire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.detach();
  }

 private:
  struct Job {
    ChunkFn fn;
    void* ctx;
    index_t units, chunks;
  };

  void start_workers() {
    if (!workers_.empty() || threads_ == 1) return;
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void worker_loop() {
    std::uint32_t seen = 0;
    for (;;) {
      Job job;
      std::uint32_t gen;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen = gen_;
        job = job_;
      }
      work(gen, job);
    }
  }

  // Claims and runs chunks of job `gen` until none is left (or a newer job replaced it).
  void work(std::uint32_t gen, const Job& job) {
    std::uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (std::uint32_t(s >> 32) != gen || index_t(std::uint32_t(s)) >= job.chunks) return;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
      const index_t c = index_t(std::uint32_t(s));
      job.fn(job.ctx, job.units * c / job.chunks, job.units * (c + 1) / job.chunks);
      done_.fetch_add(1, std::memory_order_acq_rel);
      s = state_.load(std::memory_order_acquire);
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one job at a time
  std::mutex mu_;      // guards gen_, job_, stop_
  std::condition_variable cv_;
  std::uint32_t gen_ = 0;
  Job job_{};
  bool stop_ = false;
  std::atomic<std::uint64_t> state_{0};  // generation << 32 | next chunk
  std::atomic<index_t> done_{0};         // chunks of the current job finished
};

std::mutex pool_mu;
Pool* pool = nullptr;  // never deleted: workers may outlive a replaced pool's owner
pid_t pool_pid = 0;
int requested_threads = 0;  // 0: omp_get_max_threads() (OMP_NUM_THREADS, CPU affinity)

Pool& current_pool() {
  std::lock_guard<std::mutex> lock(pool_mu);
  if (!pool || pool_pid != getpid()) {  // first use, or a fork()ed child: the threads are gone
    pool = new Pool(requested_threads > 0 ? requested_threads : omp_get_max_threads());
    pool_pid = getpid();
  }
  return *pool;
}

}  // namespace

void parallel_for_chunks(index_t units, ChunkFn fn, void* ctx) {
  current_pool().run(units, fn, ctx);
}

int num_threads() { return current_pool().threads(); }

py::dict build_info() {
  py::dict info;
  info["compiler"] = __VERSION__;
#ifdef __NO_MATH_ERRNO__
  info["math_errno"] = false;  // -fno-math-errno: the sqrt loops of the optimizers vectorize
#else
  info["math_errno"] = true;
#endif
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
  info["clones"] = "x86-64-v4 (AVX-512), x86-64-v3 (AVX2+FMA), baseline";
#else
  info["clones"] = "none (baseline only)";
#endif
  info["threads"] = num_threads();
  return info;
}

void set_num_threads(int threads) {
  std::lock_guard<std::mutex> lock(pool_mu);
  if (pool && pool_pid == getpid()) pool->retire();
  requested_threads = std::max(0, threads);
  pool = nullptr;
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_parallel(py::module_& m) {
  using namespace py::literals;
  m.def("build_info", &pydl::build_info, "How the extension was compiled, and its threads.");
  m.def("num_threads", &pydl::num_threads, "The number of threads the kernels use.");
  m.def("set_num_threads", &pydl::set_num_threads, "threads"_a,
        "Use this many threads (0: the default, OMP_NUM_THREADS or the CPUs available).");
}

}  // namespace pydl
