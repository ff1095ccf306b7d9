; iobp: I/O breakpoints (DR7 R/W = 10 with CR4.DE = 1, SDM Vol. 3 18.2.4, 18.2.5,
; 18.3.1.2): IN, OUT, INS and OUTS that touch a port in a breakpoint's range raise a #DB
; trap after the instruction, with DR6.Bn of every breakpoint hit.
; Checked with QEMU as the referee:
; - OUT and IN with an immediate port and through DX, each operand size; a port next to
;   the range hits nothing, an access overlapping the range's first or last port hits;
; - OUTSB and INSB (no REP): the trap comes after the instruction;
; - one access hitting two breakpoints reports both; a breakpoint not enabled in DR7 never
;   fires; a data breakpoint at the linear address equal to the port is not an I/O one;
; - an OUT that faults (#GP from the I/O permission check at ring 3) does not trap.
; Where QEMU 7.2 TCG differs from the SDM, the checks run only with `sdm-only` on the
; multiboot command line, which the harness passes to crane86 alone:
; - REP OUTSB: the trap comes after the first iteration, with EIP still at the
;   instruction, ECX and ESI stepped once (QEMU leaves the instruction at once, with ECX as
;   it was before the iteration);
; - a breakpoint address not aligned to its length covers the aligned range (the CPU
;   ignores the low bits; QEMU matches from the unaligned port);
; - an OUT with TF set: one #DB reporting both BS and Bn (QEMU reports Bn alone).
; Ports 0x80-0x87 are used: POST and DMA page registers, where writes change nothing the
; guest reads back (the values read are never printed).

%include "lib.inc"

DR7_FIXED       equ 0x400
DR6_BS          equ 1 << 14
DR6_MASK        equ 0xe00f              ; BT, BS, BD and B0-B3: the bits compared
CR4_DE          equ 1 << 3
RW_IO           equ 0b10
RW_DATA         equ 0b11
LEN1            equ 0b00
LEN2            equ 0b01
LEN4            equ 0b11

; DR7 for breakpoint %1 (0-3), locally enabled, with R/W bits %2 and LEN bits %3.
%define DR7_BP(n, rw, len) (DR7_FIXED | (1 << (2 * (n))) | (((len) << 2 | (rw)) << (16 + 4 * (n))))

%macro CLEAR_DR6 0
        xor     eax, eax
        mov     dr6, eax
%endmacro

; CHECK_DR6 "name", bits: the DR6 bits in DR6_MASK are `bits`.
%macro CHECK_DR6 2
        mov     eax, dr6
        and     eax, DR6_MASK
        CHECK   %1, eax, %2
%endmacro

%macro SET_DR7 1
        mov     eax, %1
        mov     dr7, eax
%endmacro

; IO_HIT "name", bits, instruction: the instruction (which must leave EFLAGS alone and may
; use AL/AX/EAX, DX, ESI and EDI as set up before) traps after itself with DR6 = bits.
%macro IO_HIT 3
        CLEAR_DR6
        ARM_IRET
        push    FL_FIXED
        popfd
        %3
%%next:
        VERIFY  %1, M_BASIC, 1, 0, %%next, SEL_CODE32, FL_FIXED
%strcat %%dr6name %1, " dr6"
        CHECK_DR6 %%dr6name, %2
%endmacro

main:
        call    enable_tss
        mov     eax, cr4
        or      eax, CR4_DE
        mov     cr4, eax
        cld

        ; ---- one port, DR0 = 0x80 ----
        mov     eax, 0x80
        mov     dr0, eax
        SET_DR7 DR7_BP(0, RW_IO, LEN1)
        mov     al, 0
        out     0x81, al                ; next to it: nothing
        in      al, 0x7f
        IO_HIT  "out imm8", 0b1, {out 0x80, al}
        IO_HIT  "in imm8", 0b1, {in al, 0x80}
        mov     dx, 0x80
        IO_HIT  "out dx", 0b1, {out dx, al}
        mov     dx, 0x7e
        IO_HIT  "in eax from dx covering the port", 0b1, {in eax, dx}
        mov     dx, 0x7f
        IO_HIT  "out ax overlapping the port", 0b1, {out dx, ax}

        ; ---- four ports, DR2 = 0x84 (0x84-0x87) ----
        mov     eax, 0x84
        mov     dr2, eax
        SET_DR7 DR7_BP(2, RW_IO, LEN4)
        mov     ax, 0
        out     0x82, ax                ; 0x82-0x83: nothing
        out     0x88, al
        IO_HIT  "out ax into the first port", 0b100, {out 0x83, ax}
        IO_HIT  "out al at the last port", 0b100, {out 0x87, al}
        IO_HIT  "in ax from the middle", 0b100, {in ax, 0x85}

        ; ---- string I/O without REP ----
        mov     esi, buffer
        mov     dx, 0x86
        IO_HIT  "outsb", 0b100, {outsb}
        CHECK   "outsb esi", esi, buffer + 1
        mov     edi, buffer
        IO_HIT  "insb", 0b100, {insb}
        CHECK   "insb edi", edi, buffer + 1

        ; ---- two breakpoints hit by one access: DR1 = 0x85 and DR2's 0x84-0x87 ----
        mov     eax, 0x85
        mov     dr1, eax
        SET_DR7 DR7_BP(1, RW_IO, LEN1) | DR7_BP(2, RW_IO, LEN4)
        mov     dx, 0x82
        IO_HIT  "two breakpoints", 0b110, {out dx, eax}

        ; ---- not enabled, and data breakpoints at the same numbers ----
        SET_DR7 DR7_FIXED | (((LEN1 << 2) | RW_IO) << 16)       ; R/W0 = 10, L0 = G0 = 0
        mov     eax, 0x80
        mov     dr0, eax
        out     0x80, al
        SET_DR7 DR7_BP(0, RW_DATA, LEN1)
        out     0x80, al
        in      al, 0x80
        PASS    "no trap from a disabled or a data breakpoint"

        ; ---- an OUT that faults does not trap ----
        SET_DR7 DR7_BP(0, RW_IO, LEN1)
        CLEAR_DR6
        ARM_RESUME .r3_done
        mov     eax, ring3_out
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.r3_done:
        VERIFY  "out at ring 3 with iopl 0 is #gp, not #db", M_PRIV, 13, 0, ring3_out, \
                SEL_UCODE32 | 3, FL_FIXED, USER_STACK_TOP, SEL_UDATA | 3
        CHECK_DR6 "faulting out dr6", 0

        call    sdm_requested
        test    eax, eax
        jz      .done
        call    sdm_tests
.done:  SET_DR7 DR7_FIXED
        CLEAR_DR6
        ret

; sdm_tests: the checks QEMU gets wrong (see the top of the file).
sdm_tests:
        ; REP OUTSB of three bytes to a watched port: a #DB after the first iteration. The
        ; #DB handler records the registers and disarms DR7, so the rest runs on.
        mov     eax, 1
        mov     ebx, rep_db
        mov     cl, 0x8e
        call    set_gate32
        mov     eax, 0x80
        mov     dr0, eax
        SET_DR7 DR7_BP(0, RW_IO, LEN1)
        CLEAR_DR6
        mov     dword [rep_count], 0
        mov     esi, buffer
        mov     ecx, 3
        mov     dx, 0x80
.rep:   rep outsb
        CHECK   "rep outsb: one #db", dword [rep_count], 1
        CHECK   "rep outsb: eip at the instruction", dword [rep_eip], .rep
        CHECK   "rep outsb: ecx after one iteration", dword [rep_ecx], 2
        CHECK   "rep outsb: esi after one iteration", dword [rep_esi], buffer + 1
        CHECK   "rep outsb: dr6", dword [rep_dr6], 0b1
        CHECK   "rep outsb: ran to its end", ecx, 0
        mov     eax, 1
        mov     ebx, exc_stubs32 + STUB_SIZE
        mov     cl, 0x8e
        call    set_gate32

        ; an unaligned address: 0x81 with LEN 2 covers 0x80-0x81
        mov     eax, 0x81
        mov     dr3, eax
        SET_DR7 DR7_BP(3, RW_IO, LEN2)
        out     0x82, al
        IO_HIT  "unaligned address aligned down", 0b1000, {out 0x80, al}

        ; single-step and an I/O breakpoint in one #DB
        CLEAR_DR6
        ARM_RESUME .tf_done             ; resumed with TF clear
        push    FL_FIXED | FL_TF
        popfd
        out     0x80, al
.tf_next:
        nop
.tf_done:
        VERIFY  "tf and an i/o breakpoint", M_BASIC, 1, 0, .tf_next, SEL_CODE32, \
                FL_FIXED | FL_TF
        CHECK_DR6 "tf and an i/o breakpoint dr6", DR6_BS | 0b1000
        ret

; rep_db: the #DB handler of the REP OUTSB check: records EIP, ECX, ESI and DR6, counts,
; and disarms the breakpoints.
rep_db:
        push    eax
        mov     eax, [esp + 4]          ; EIP
        mov     [rep_eip], eax
        mov     [rep_ecx], ecx
        mov     [rep_esi], esi
        mov     eax, dr6
        and     eax, DR6_MASK
        mov     [rep_dr6], eax
        mov     eax, DR7_FIXED
        mov     dr7, eax
        inc     dword [rep_count]
        pop     eax
        iretd

ring3_out:
        out     0x80, al
        int     0x3f

        align   4
rep_count:      dd 0
rep_eip:        dd 0
rep_ecx:        dd 0
rep_esi:        dd 0
rep_dr6:        dd 0
buffer:         dd 0, 0, 0, 0

GUEST_END
