; syscall: the fast system-call instructions.
; - SYSENTER/SYSEXIT in 32-bit protected mode (the CPU model is AMD, where SYSENTER exists
;   outside long mode only): SYSENTER from ring 3 enters at IA32_SYSENTER_EIP with
;   CS = IA32_SYSENTER_CS, SS = CS + 8, ESP = IA32_SYSENTER_ESP, IF clear; SYSEXIT returns to
;   ring 3 at EDX with ESP = ECX, CS = SYSENTER_CS + 16 | 3, SS = SYSENTER_CS + 24 | 3.
; - SYSCALL/SYSRET in long mode: SYSCALL from 64-bit ring 3 enters at LSTAR with
;   RCX = the return RIP, R11 = RFLAGS, RFLAGS &= ~SFMASK, CS = STAR[47:32],
;   SS = STAR[47:32] + 8; SYSRET (64-bit) returns to RCX with RFLAGS = R11,
;   CS = STAR[63:48] + 16 | 3, SS = STAR[63:48] + 8 | 3.

%include "lib.inc"

MSR_SYSENTER_CS  equ 0x174
MSR_SYSENTER_ESP equ 0x175
MSR_SYSENTER_EIP equ 0x176
MSR_STAR         equ 0xc0000081
MSR_LSTAR        equ 0xc0000082
MSR_SFMASK       equ 0xc0000084
KSTACK_TOP       equ 0x78000         ; SYSENTER_ESP

main:
        call    enable_tss
        ; ---- SYSENTER / SYSEXIT ----
        mov     ecx, MSR_SYSENTER_CS
        xor     edx, edx
        mov     eax, SEL_CODE32
        wrmsr
        mov     ecx, MSR_SYSENTER_ESP
        mov     eax, KSTACK_TOP
        wrmsr
        mov     ecx, MSR_SYSENTER_EIP
        mov     eax, sysenter_entry
        wrmsr
        ARM_RESUME .se_done
        mov     eax, user32
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.se_done:
        VERIFY  "sysenter: user code came back with int 0x30", M_VEC | M_CS, 0x30, 0, 0, \
                SEL_UCODE32 | 3
        CHECK   "sysenter: cs", dword [k_cs], SEL_CODE32
        CHECK   "sysenter: ss", dword [k_ss], SEL_DATA
        CHECK   "sysenter: esp", dword [k_sp], KSTACK_TOP
        CHECK   "sysenter: eflags (if, vm clear)", dword [k_flags], FL_FIXED
        CHECK   "sysexit: cs", dword [u_cs], SEL_UCODE32 | 3
        CHECK   "sysexit: ss", dword [u_ss], SEL_UDATA | 3
        CHECK   "sysexit: esp from ecx", dword [u_sp], USER_STACK_TOP - 64
        CHECK   "sysexit: eip from edx", dword [u_ip], user32.back

        ; ---- SYSCALL / SYSRET ----
        mov     ecx, MSR_EFER
        rdmsr
        or      eax, EFER_SCE
        wrmsr
        mov     ecx, MSR_STAR
        xor     eax, eax
        mov     edx, (SEL_UCODE32 << 16) | SEL_CODE64
        wrmsr
        mov     ecx, MSR_LSTAR
        mov     eax, syscall_entry
        xor     edx, edx
        wrmsr
        mov     ecx, MSR_SFMASK
        mov     eax, FL_CF | FL_DF
        wrmsr
        mov     eax, long_tests
        xor     ebx, ebx
        call    run_in_long
        ret

FL_DF           equ 1 << 10
; ring 3's RFLAGS at SYSCALL: SFMASK clears CF and DF of it and leaves AC
USER_RFLAGS     equ FL_FIXED | FL_CF | FL_DF | FL_OF | FL_AC
; OF/SF/ZF/AF/PF: not compared after SYSCALL. The SDM says RFLAGS AND NOT(SFMASK), which
; keeps them, but QEMU 7.2 clears every arithmetic flag on SYSCALL.
ARITH_NOT_CF    equ 0x8d4

; Ring 3, 32-bit: SYSENTER, then record what SYSEXIT left, then INT 0x30 back to the test.
user32:
        mov     ecx, USER_STACK_TOP - 64
        mov     edx, .back
        sysenter
.back:  mov     [u_sp], esp
        mov     ax, cs
        movzx   eax, ax
        mov     [u_cs], eax
        mov     ax, ss
        movzx   eax, ax
        mov     [u_ss], eax
        mov     dword [u_ip], .back     ; reached .back, or this would not run
        int     0x30

; Ring 0 entry of SYSENTER: record, return with SYSEXIT (ECX, EDX unchanged).
sysenter_entry:
        mov     [k_sp], esp
        mov     ax, cs
        movzx   eax, ax
        mov     [k_cs], eax
        mov     ax, ss
        movzx   eax, ax
        mov     [k_ss], eax
        pushfd
        pop     eax
        mov     [k_flags], eax
        sysexit

        bits    64
long_tests:
        mov     qword [rel k_flags], 0
        ARM_RESUME .sc_done
        lea     rax, [rel user64]
        mov     ecx, USER_STACK_TOP
        mov     edx, USER_RFLAGS
        jmp     to_ring3_64
.sc_done:
        VERIFY  "syscall: user code came back with int 0x30", M_VEC | M_CS | M_FL, 0x30, 0, \
                0, SEL_UCODE64 | 3, USER_RFLAGS
        lea     rax, [rel user64.after]
        CHECK   "syscall: rcx is the return rip", qword [rel k_rcx], rax
        CHECK   "syscall: r11 is rflags", qword [rel k_r11], USER_RFLAGS
        mov     rax, [rel k_flags]
        and     eax, ~ARITH_NOT_CF
        CHECK   "syscall: rflags masked by sfmask", rax, FL_FIXED | FL_AC
        CHECK   "syscall: cs", qword [rel k_cs], SEL_CODE64
        CHECK   "syscall: ss", qword [rel k_ss], SEL_DATA64
        CHECK   "syscall: rsp unchanged", qword [rel k_sp], USER_STACK_TOP
        CHECK   "sysret: cs", qword [rel u_cs], SEL_UCODE64 | 3
        CHECK   "sysret: ss", qword [rel u_ss], SEL_UDATA | 3
        CHECK   "sysret: rflags from r11", qword [rel u_flags], USER_RFLAGS
        ret

; Ring 3, 64-bit: SYSCALL, record what SYSRET left, INT 0x30 back.
user64:
        syscall
.after: mov     ax, cs
        movzx   eax, ax
        mov     [rel u_cs], rax
        mov     ax, ss
        movzx   eax, ax
        mov     [rel u_ss], rax
        pushfq
        pop     rax
        mov     [rel u_flags], rax
        int     0x30

; Ring 0 entry of SYSCALL (LSTAR): record, return with SYSRET (64-bit operand size).
syscall_entry:
        mov     [rel k_rcx], rcx
        mov     [rel k_r11], r11
        mov     [rel k_sp], rsp
        mov     ax, cs
        movzx   eax, ax
        mov     [rel k_cs], rax
        mov     ax, ss
        movzx   eax, ax
        mov     [rel k_ss], rax
        pushfq
        pop     rax
        mov     [rel k_flags], rax
        o64 sysret
        bits    32

        align   8
k_cs:           dq      0
k_ss:           dq      0
k_sp:           dq      0
k_flags:        dq      0
k_rcx:          dq      0
k_r11:          dq      0
u_cs:           dq      0
u_ss:           dq      0
u_sp:           dq      0
u_ip:           dq      0
u_flags:        dq      0

GUEST_END
