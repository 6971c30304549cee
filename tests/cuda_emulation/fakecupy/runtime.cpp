// The emulation runtime: runs a RawKernel launch on the CPU, one CPU execution context (own
// stack, own program counter) per CUDA thread of a block; the blocks run one after another, so
// the kernels' `static` __shared__ arrays are per-block memory. __syncthreads is a real barrier
// over the block's threads, warp shuffles a barrier over the warp's lanes plus an exchange of
// values. A thread that returns from the kernel leaves every barrier (as exited threads do on
// the GPU). Misuse that a GPU turns into garbage or a hang is reported instead: a shuffle
// reading a lane that did not take part, lanes disagreeing on a mask, a barrier nobody
// completes.
//
// Two schedulers, the same semantics (TN_CUDA_EMU_SCHEDULER):
//   fibers  (default) the CUDA threads are fibers on one OS thread, switched at every
//           barrier in a fixed round-robin order: deterministic, and a deadlock is detected at
//           once (a whole round without progress);
//   threads one POSIX thread per CUDA thread, truly concurrent; a barrier that does not
//           complete within TN_CUDA_EMU_TIMEOUT seconds (default 60) is reported.
#include <pthread.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emu.h"
#include "fiber.h"

namespace {

struct Abort {};  // unwinds a kernel thread after an error

std::mutex error_mutex;
std::string error_message;
int failed = 0;

bool has_failed() { return __atomic_load_n(&failed, __ATOMIC_SEQ_CST) != 0; }

void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!has_failed()) {
        error_message = message;
        __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
    }
}

struct Group {  // the live members of a block or a warp, meeting at one barrier at a time
    unsigned alive = 0;  // warps: a bit per lane still running
    int live = 0, arrived = 0;
    unsigned long generation = 0;
    unsigned mask = 0;   // warps: the mask of the collective in progress
    std::condition_variable cv;
};

const std::size_t kFiberStack = 256 * 1024;

struct Launch {
    tn_emu_launch_dims dims;
    void (*body)(void*) = nullptr;
    void* ctx = nullptr;
    int threads = 0;
    bool fibers = true;
    std::mutex m;
    Group block, end;
    std::vector<Group> warps;
    std::vector<unsigned long long> slots;  // [warp][2][32]: double-buffered exchange
    std::vector<unsigned long> stamps;      // the generation each slot was written in
    std::vector<int> phase;                 // per thread: the buffer of its next exchange
    std::vector<tn_emu_thread_state> states;
    bool stop = false;
    std::chrono::seconds limit{60};
    // fibers
    Fiber scheduler;
    std::vector<Fiber> contexts;
    std::vector<std::unique_ptr<char[]>> stacks;
    std::vector<char> finished;
    int running = -1;
    unsigned long progress = 0;
};

Launch* current = nullptr;
thread_local int os_thread = 0;

int me() { return current->fibers ? current->running : os_thread; }

struct Guard {  // the launch's lock (threads only: fibers never run at the same time)
    std::unique_lock<std::mutex> lock;
    explicit Guard(Launch& L) : lock(L.m, std::defer_lock) {
        if (!L.fibers) lock.lock();
    }
};

int lanes_in_warp(const Launch& L, int warp) {
    const int rest = L.threads - 32 * warp;
    return rest < 32 ? rest : 32;
}

unsigned all_lanes(int lanes) { return lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u; }

void complete(Launch& L, Group& g) {
    g.arrived = 0;
    ++g.generation;
    ++L.progress;
    if (!L.fibers) g.cv.notify_all();
}

void yield(Launch& L) { switch_fiber(L.contexts[L.running], L.scheduler); }

// Wait until `g` moves past `generation`; with `abortable`, an error elsewhere ends the wait.
void wait(Launch& L, Group& g, Guard& guard, unsigned long generation, const char* what,
          bool abortable) {
    while (g.generation == generation) {
        if (L.fibers) {
            yield(L);
        } else if (!abortable) {
            g.cv.wait(guard.lock);
        } else if (g.cv.wait_for(guard.lock, L.limit) == std::cv_status::timeout &&
                   g.generation == generation) {
            char text[240];
            const uint3 b = L.states[me()].block_idx;
            std::snprintf(text, sizeof text, "%s in block (%u, %u, %u): thread %d waited %lld s "
                          "for the others (a barrier some threads never reach?)", what, b.x, b.y,
                          b.z, me(), (long long)L.limit.count());
            fail(text);
        }
        if (abortable && has_failed() && g.generation == generation) {
            --g.arrived;
            throw Abort();
        }
    }
}

void arrive(Launch& L, Group& g, Guard& guard, int needed, const char* what) {
    ++L.progress;
    const unsigned long generation = g.generation;
    if (++g.arrived >= needed) {
        complete(L, g);
        return;
    }
    wait(L, g, guard, generation, what, true);
}

void release_if_complete(Launch& L, Group& g, int needed) {
    if (g.arrived > 0 && g.arrived >= needed) complete(L, g);
}

[[noreturn]] void misuse(const char* format, const char* what, int a, int b, unsigned c,
                         unsigned d) {
    char text[300];
    std::snprintf(text, sizeof text, format, what, a, b, c, d);
    fail(text);
    throw Abort();
}

// One warp collective: deposit `bits`, wait for the lanes of `mask`; returns the slot base.
int collective(Launch& L, Guard& guard, unsigned long long bits, unsigned mask, const char* what,
               unsigned long* generation) {
    const int warp = me() / 32, lane = me() % 32;
    Group& g = L.warps[warp];
    if (!(mask >> lane & 1u))
        misuse("%s: lane %d of warp %d called it with mask 0x%08x, which leaves that lane out",
               what, lane, warp, mask, 0);
    if (g.arrived > 0 && g.mask != mask)
        misuse("%s: lane %d of warp %d passed mask 0x%08x while its other lanes passed 0x%08x",
               what, lane, warp, mask, g.mask);
    g.mask = mask;
    const int slot = (warp * 2 + L.phase[me()]) * 32;
    L.slots[slot + lane] = bits;
    L.stamps[slot + lane] = g.generation;
    *generation = g.generation;
    L.phase[me()] ^= 1;
    arrive(L, g, guard, __builtin_popcount(mask & g.alive), what);
    return slot;
}

void leave_block(Launch& L) {
    Guard guard(L);
    const int t = me();
    Group& warp = L.warps[t / 32];
    warp.alive &= ~(1u << (t % 32));
    --warp.live;
    release_if_complete(L, warp, __builtin_popcount(warp.mask & warp.alive));
    --L.block.live;
    release_if_complete(L, L.block, L.block.live);
    ++L.progress;
    const unsigned long generation = L.end.generation;
    if (++L.end.arrived == L.threads) {  // the last one resets the groups for the next block
        L.block.live = L.threads;
        L.block.arrived = 0;
        for (int w = 0; w < (int)L.warps.size(); ++w) {
            L.warps[w].alive = all_lanes(lanes_in_warp(L, w));
            L.warps[w].live = lanes_in_warp(L, w);
            L.warps[w].arrived = 0;
        }
        L.stop = has_failed();
        complete(L, L.end);
        return;
    }
    wait(L, L.end, guard, generation, "end of block", false);
}

void run_thread(Launch& L, int t) {
    const dim3 b = L.dims.block, g = L.dims.grid;
    L.states[t].thread_idx = {t % b.x, t / b.x % b.y, t / (b.x * b.y)};
    for (unsigned z = 0; z < g.z; ++z)
        for (unsigned y = 0; y < g.y; ++y)
            for (unsigned x = 0; x < g.x; ++x) {
                L.states[t].block_idx = {x, y, z};
                try {
                    L.body(L.ctx);
                } catch (const Abort&) {
                } catch (...) {  // nothing may unwind past a fiber's first frame
                    fail("a C++ exception escaped the kernel");
                }
                leave_block(L);
                if (L.stop) return;
            }
}

void* os_thread_main(void* arg) {
    os_thread = (int)(std::intptr_t)arg;
    run_thread(*current, os_thread);
    return nullptr;
}

void run_os_threads(Launch& L) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    std::vector<pthread_t> ids(L.threads);
    for (int t = 0; t < L.threads; ++t)
        if (pthread_create(&ids[t], &attr, os_thread_main, (void*)(std::intptr_t)t) != 0) {
            std::fprintf(stderr, "tn_emu: could not start thread %d of %d\n", t, L.threads);
            std::abort();  // the others would wait for it forever
        }
    pthread_attr_destroy(&attr);
    for (pthread_t id : ids) pthread_join(id, nullptr);
}

void fiber_main() {  // entered by the first switch to a fiber; never returns
    Launch& L = *current;
    const int t = L.running;
    run_thread(L, t);
    L.finished[t] = 1;
    ++L.progress;
    switch_fiber(L.contexts[t], L.scheduler);
    std::abort();  // a finished fiber is never resumed
}

void run_fibers(Launch& L) {
    L.contexts.resize(L.threads);
    L.finished.assign(L.threads, 0);
    for (int t = 0; t < L.threads; ++t) {
        L.stacks.emplace_back(new char[kFiberStack]);
        L.contexts[t].start(L.stacks.back().get(), kFiberStack, fiber_main);
    }
    int remaining = L.threads;
    while (remaining > 0) {
        const unsigned long before = L.progress;
        for (int t = 0; t < L.threads; ++t) {
            if (L.finished[t]) continue;
            L.running = t;
            switch_fiber(L.scheduler, L.contexts[t]);
            if (L.finished[t]) --remaining;
        }
        L.running = -1;
        if (remaining > 0 && L.progress == before) {
            char text[240];
            std::snprintf(text, sizeof text, "deadlock: all %d unfinished threads of the block "
                          "wait at a barrier (__syncthreads or a warp collective) that the "
                          "others never reach", remaining);
            fail(text);
        }
    }
}

}  // namespace

extern "C" {

tn_emu_thread_state* tn_emu_thread(void) { return &current->states[me()]; }
const tn_emu_launch_dims* tn_emu_dims(void) { return &current->dims; }
unsigned tn_emu_lane(void) { return (unsigned)me() % 32u; }
void tn_emu_fail(const char* message) { fail(message); }
int tn_emu_failed(void) { return has_failed(); }

void tn_emu_reset(void) {
    std::lock_guard<std::mutex> lock(error_mutex);
    error_message.clear();
    __atomic_store_n(&failed, 0, __ATOMIC_SEQ_CST);
}

int tn_emu_error(char* out, int size) {
    std::lock_guard<std::mutex> lock(error_mutex);
    std::snprintf(out, size, "%s", error_message.c_str());
    return failed;
}

void tn_emu_syncthreads(void) {
    Launch& L = *current;
    Guard guard(L);
    arrive(L, L.block, guard, L.block.live, "__syncthreads");
}

void tn_emu_syncwarp(unsigned mask) {
    Launch& L = *current;
    Guard guard(L);
    unsigned long generation;
    collective(L, guard, 0, mask, "__syncwarp", &generation);
}

unsigned long long tn_emu_exchange(unsigned long long bits, int src, unsigned mask,
                                   const char* what) {
    Launch& L = *current;
    Guard guard(L);
    unsigned long generation;
    const int slot = collective(L, guard, bits, mask, what, &generation);
    if (src < 0 || src >= lanes_in_warp(L, me() / 32) || !(mask >> src & 1u) ||
        L.stamps[slot + src] != generation)
        misuse("%s: lane %d of warp %d read lane %u, which did not take part (mask 0x%08x); "
               "on a GPU that value is undefined", what, me() % 32, me() / 32, src, mask);
    return L.slots[slot + src];
}

unsigned tn_emu_ballot(int predicate, unsigned mask) {
    Launch& L = *current;
    Guard guard(L);
    unsigned long generation;
    const int slot = collective(L, guard, predicate ? 1 : 0, mask, "__ballot_sync", &generation);
    unsigned out = 0;
    for (int lane = 0; lane < 32; ++lane)
        if ((mask >> lane & 1u) && L.stamps[slot + lane] == generation && L.slots[slot + lane])
            out |= 1u << lane;
    return out;
}

int tn_emu_run(const unsigned* grid, const unsigned* block, void (*body)(void*), void* ctx) {
    tn_emu_reset();
    const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || block[2] > 64 || grid[0] == 0 || grid[1] == 0 ||
        grid[2] == 0 || grid[1] > 65535 || grid[2] > 65535 || grid[0] > 2147483647u) {
        char text[240];
        std::snprintf(text, sizeof text, "invalid launch configuration: grid (%u, %u, %u), "
                      "block (%u, %u, %u) (cudaErrorInvalidConfiguration on a GPU)", grid[0],
                      grid[1], grid[2], block[0], block[1], block[2]);
        fail(text);
        return 1;
    }
    Launch L;
    L.dims.grid = dim3(grid[0], grid[1], grid[2]);
    L.dims.block = dim3(block[0], block[1], block[2]);
    L.body = body;
    L.ctx = ctx;
    const char* scheduler = std::getenv("TN_CUDA_EMU_SCHEDULER");
    L.fibers = !(scheduler && std::strcmp(scheduler, "threads") == 0);
    const char* limit = std::getenv("TN_CUDA_EMU_TIMEOUT");
    L.limit = std::chrono::seconds(limit ? std::atoi(limit) : 60);
    L.threads = (int)threads;
    const int warps = (L.threads + 31) / 32;
    L.warps = std::vector<Group>(warps);
    L.slots.assign(warps * 64, 0);
    L.stamps.assign(warps * 64, ~0ul);
    L.phase.assign(L.threads, 0);
    L.states.resize(L.threads);
    L.block.live = L.threads;
    for (int w = 0; w < warps; ++w) {
        L.warps[w].alive = all_lanes(lanes_in_warp(L, w));
        L.warps[w].live = lanes_in_warp(L, w);
    }
    current = &L;
    if (L.fibers)
        run_fibers(L);
    else
        run_os_threads(L);
    current = nullptr;
    return tn_emu_failed();
}

}  // extern "C"
