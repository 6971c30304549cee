// Fibers for the emulation runtime: one stack and register set per CUDA thread.
#pragma once
#include <ucontext.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace {

// Switching between fibers. x86-64: a few instructions that swap the callee-saved registers
// and the stack (swapcontext also makes a signal-mask system call each time, 10x slower);
// elsewhere: ucontext.
#if defined(__x86_64__)
extern "C" void tn_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl tn_emu_switch
    .type tn_emu_switch, @function
tn_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size tn_emu_switch, .-tn_emu_switch
)");

struct Fiber {
    void* sp = nullptr;
    // A fresh stack whose first switch "returns" into `entry` (16-byte ABI alignment kept).
    void start(char* stack, std::size_t size, void (*entry)()) {
        std::uintptr_t top = ((std::uintptr_t)(stack + size)) & ~(std::uintptr_t)15;
        void** frame = (void**)top;
        frame[-1] = nullptr;            // entry's (never used) return address
        frame[-2] = (void*)entry;       // where the first switch returns to
        for (int r = 3; r <= 8; ++r) frame[-r] = nullptr;  // rbp rbx r12 r13 r14 r15
        unsigned control[2];
        asm volatile("stmxcsr %0" : "=m"(control[0]));
        asm volatile("fnstcw %0" : "=m"(control[1]));
        std::memcpy(&frame[-9], control, 8);
        sp = &frame[-9];
    }
};
inline void switch_fiber(Fiber& from, Fiber& to) { tn_emu_switch(&from.sp, to.sp); }
#else
struct Fiber {
    ucontext_t context;
    void start(char* stack, std::size_t size, void (*entry)()) {
        getcontext(&context);
        context.uc_stack.ss_sp = stack;
        context.uc_stack.ss_size = size;
        context.uc_link = nullptr;
        makecontext(&context, entry, 0);
    }
};
inline void switch_fiber(Fiber& from, Fiber& to) { swapcontext(&from.context, &to.context); }
#endif

}  // namespace
