; debugregs: the debug registers (SDM Vol. 3 chapter 18) beyond what `exceptions` covers
; (single-step and the #DB frame):
; - data breakpoints: write (R/W = 01) and read/write (R/W = 11) with each length (1, 2, 4,
;   8 bytes); a trap after the access with DR6.Bn; a read does not hit a write breakpoint,
;   an access next to the range hits nothing, an access overlapping its first byte hits;
;   PUSH writes the stack;
; - a data breakpoint hit by one iteration of REP STOSD: the trap comes after that
;   iteration, with EIP still at the instruction since iterations remain;
; - MOV SS and POP SS blocking: the single-step trap of the SS load is held back, and one
;   #DB comes after the next instruction.
; Where QEMU 7.2 TCG differs from the SDM (see the QEMU bugs in docs/design.md), the checks
; run only with `sdm-only` on the multiboot command line, which the harness passes to
; crane86 alone (QEMU cannot referee them): ICEBP (QEMU raises #UD), DR7.GD (QEMU ignores
; it; an access to a debug register is a #DB fault at the MOV with DR6.BD set, delivering
; it clears DR7.GD, MOV SS blocking does not hold it back), DR6 reporting every
; breakpoint one access hits (QEMU reports the first), MOV SS blocking of data
; breakpoints (QEMU delivers the #DB after the MOV SS), and breakpoint addresses not
; aligned to their length (the CPU ignores the low bits; QEMU watches from the unaligned
; address).

%include "lib.inc"

DR7_GD          equ 1 << 13
DR7_FIXED       equ 0x400
DR6_BD          equ 1 << 13
DR6_BS          equ 1 << 14
DR6_MASK        equ 0xe00f              ; BT, BS, BD and B0-B3: the bits compared

; DR7 for breakpoint %1 (0-3), locally enabled, with R/W bits %2 and LEN bits %3.
%define DR7_BP(n, rw, len) (DR7_FIXED | (1 << (2 * (n))) | (((len) << 2 | (rw)) << (16 + 4 * (n))))

; CLEAR_DR6: DR6 = 0 (reads back with its fixed bits, which DR6_MASK leaves out).
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

; SET_DR7 value
%macro SET_DR7 1
        mov     eax, %1
        mov     dr7, eax
%endmacro

; DATA_HIT "name", "dr6 check name", instruction[, instruction]: the instructions (which must
; leave EFLAGS alone) hit a data breakpoint on DR1: one trap, EIP after them, DR6 = B1.
%macro DATA_HIT 3-4
        CLEAR_DR6
        ARM_IRET
        push    FL_FIXED
        popfd
        %3
%if %0 == 4
        %4
%endif
%%next:
        VERIFY  %1, M_BASIC, 1, 0, %%next, SEL_CODE32, FL_FIXED
        CHECK_DR6 %2, 0b10
%endmacro

; RW_LEN len, lenbits, "name": a read/write breakpoint of `len` bytes at rvar on DR1.
%macro RW_LEN 3
        mov     eax, rvar
        mov     dr1, eax
        SET_DR7 DR7_BP(1, 0b11, %2)
        ; next to the range: nothing (an unexpected #DB fails the guest)
        mov     al, [rvar - 1]
        mov     al, [rvar + %1]
        mov     byte [rvar + %1], 0
%strcat RW_NAME1 %3, " read last byte"
%strcat RW_DR61 %3, " read last byte dr6"
%strcat RW_NAME2 %3, " write first byte"
%strcat RW_DR62 %3, " write first byte dr6"
        DATA_HIT RW_NAME1, RW_DR61, {mov al, [rvar + %1 - 1]}
        DATA_HIT RW_NAME2, RW_DR62, {mov dword [rvar - 3], 0}
%endmacro

main:
        call    enable_tss

        ; ---- data write breakpoint: DR0 = wvar, 4 bytes ----
        mov     eax, wvar
        mov     dr0, eax
        SET_DR7 DR7_BP(0, 0b01, 0b11)
        CLEAR_DR6
        mov     eax, [wvar]             ; a read: nothing
        mov     dword [wvar + 4], 5     ; the next dword: nothing
        mov     byte [wvar - 1], 5      ; the byte before: nothing
        ARM_IRET
        push    FL_FIXED
        popfd
        mov     dword [wvar], 0x1234
.w_next:
        VERIFY  "data write", M_BASIC, 1, 0, .w_next, SEL_CODE32, FL_FIXED
        CHECK   "data write stored", dword [wvar], 0x1234
        CHECK_DR6 "data write dr6", 0b1
        ; a PUSH writes the stack: point DR0 at the slot it will write (after setting EFLAGS,
        ; whose PUSH would hit it too; MOV and LEA leave EFLAGS alone)
        push    FL_FIXED
        popfd
        mov     eax, 0
        mov     dr6, eax
        lea     eax, [esp - 4]
        mov     dr0, eax
        ARM_IRET
        push    eax
.push_next:
        add     esp, 4
        SET_DR7 DR7_FIXED               ; before VERIFY, whose PUSHes would hit it again
        VERIFY  "data write by push", M_BASIC, 1, 0, .push_next, SEL_CODE32, FL_FIXED
        CHECK_DR6 "data write by push dr6", 0b1

        ; ---- read/write breakpoints of each length ----
        RW_LEN  1, 0b00, "rw len 1"
        RW_LEN  2, 0b01, "rw len 2"
        RW_LEN  4, 0b11, "rw len 4"
        RW_LEN  8, 0b10, "rw len 8"
        ; ---- REP STOSD: the third iteration writes the watched byte (inside its dword) ----
        mov     eax, array + 9
        mov     dr0, eax
        SET_DR7 DR7_BP(0, 0b01, 0b00)
        CLEAR_DR6
        mov     edi, array
        mov     ecx, 4
        mov     eax, 0x77
        cld
        ARM_IRET
        push    FL_FIXED
        popfd
.rep:   rep stosd
        VERIFY  "rep stosd trap mid-instruction", M_BASIC, 1, 0, .rep, SEL_CODE32, FL_FIXED
        CHECK   "rep stosd completed", dword [array + 12], 0x77
        CHECK_DR6 "rep stosd dr6", 0b1
        SET_DR7 DR7_FIXED

        ; ---- MOV SS / POP SS blocking of the single-step trap ----
        CLEAR_DR6
        ARM_RESUME .ss_done
        mov     ax, ss
        push    FL_FIXED | FL_TF
        popfd
        mov     ss, ax
        nop                             ; no #DB before this: MOV SS blocking
.ss_next:
        nop
.ss_done:
        VERIFY  "mov ss blocks single-step", M_BASIC, 1, 0, .ss_next, SEL_CODE32, \
                FL_FIXED | FL_TF
        CHECK_DR6 "mov ss blocks single-step dr6", DR6_BS

        CLEAR_DR6
        ARM_RESUME .pss_done
        push    ss
        push    FL_FIXED | FL_TF
        popfd
        pop     ss
        nop
.pss_next:
        nop
.pss_done:
        VERIFY  "pop ss blocks single-step", M_BASIC, 1, 0, .pss_next, SEL_CODE32, \
                FL_FIXED | FL_TF
        CHECK_DR6 "pop ss blocks single-step dr6", DR6_BS

        call    sdm_requested
        test    eax, eax
        jz      .done
        call    sdm_tests
.done:  ret

; sdm_tests: the checks QEMU gets wrong (see the top of the file).
sdm_tests:
        ; two breakpoints hit by one access both report
        mov     eax, rvar
        mov     dr0, eax
        add     eax, 4
        mov     dr1, eax
        SET_DR7 DR7_BP(0, 0b11, 0b11) | DR7_BP(1, 0b01, 0b11)
        CLEAR_DR6
        ARM_IRET
        push    FL_FIXED
        popfd
        mov     dword [rvar + 2], 0
.two_next:
        VERIFY  "two breakpoints", M_BASIC, 1, 0, .two_next, SEL_CODE32, FL_FIXED
        CHECK_DR6 "two breakpoints dr6", 0b11

        ; an unaligned breakpoint address: LEN masks the low bits (rvar + 3 with 4 bytes
        ; watches rvar..rvar + 3)
        mov     eax, rvar + 3
        mov     dr1, eax
        SET_DR7 DR7_BP(1, 0b11, 0b11)
        mov     al, [rvar + 4]          ; past the aligned range: nothing
        DATA_HIT "unaligned address aligned down", "unaligned address dr6", {mov al, [rvar]}

        ; MOV SS blocking holds a data breakpoint hit by the MOV SS itself: one #DB after
        ; the next instruction
        mov     word [ssvar], SEL_DATA
        mov     eax, ssvar
        mov     dr1, eax
        SET_DR7 DR7_BP(1, 0b11, 0b01)
        DATA_HIT "mov ss blocks a data breakpoint", "mov ss blocks a data breakpoint dr6", \
                {mov ss, [ssvar]}, nop
        ; with ICEBP next: one #DB, after the ICEBP, reporting the data breakpoint
        DATA_HIT "mov ss; icebp fuses a data breakpoint", "mov ss; icebp fuses dr6", \
                {mov ss, [ssvar]}, {db 0xf1}
        SET_DR7 DR7_FIXED

        ; ICEBP
        CLEAR_DR6
        ARM_IRET
        push    FL_FIXED
        popfd
        db      0xf1
.ice_next:
        VERIFY  "icebp", M_BASIC, 1, 0, .ice_next, SEL_CODE32, FL_FIXED
        CHECK_DR6 "icebp dr6", 0

        ; from ring 3, through the DPL 0 gate of vector 1
        ARM_RESUME .ice3_done
        mov     eax, .ice3
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.ice3:  db      0xf1
.ice3_done:
        VERIFY  "icebp from ring 3", M_PRIV, 1, 0, .ice3_done, SEL_UCODE32 | 3, FL_FIXED, \
                USER_STACK_TOP, SEL_UDATA | 3
        ; where INT 1 is a software interrupt: #GP(vector * 8 + 2)
        ARM_RESUME .int1_done
        mov     eax, .int1
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.int1:  int     1
.int1_done:
        VERIFY  "int 1 from ring 3", M_PRIV, 13, 1*8 + 2, .int1, SEL_UCODE32 | 3, FL_FIXED, \
                USER_STACK_TOP, SEL_UDATA | 3

        ; after MOV SS with TF set: the ICEBP's #DB, without DR6.BS
        CLEAR_DR6
        ARM_RESUME .ssice_done
        mov     ax, ss
        push    FL_FIXED | FL_TF
        popfd
        mov     ss, ax
        db      0xf1
.ssice_next:
        nop
.ssice_done:
        VERIFY  "mov ss; icebp with tf", M_BASIC, 1, 0, .ssice_next, SEL_CODE32, \
                FL_FIXED | FL_TF
        CHECK_DR6 "mov ss; icebp with tf dr6", 0

        ; DR7.GD
        CLEAR_DR6
        SET_DR7 DR7_FIXED | DR7_GD
        ARM_RESUME .gd_done
        push    FL_FIXED
        popfd
.gd:    mov     eax, dr0
.gd_done:
        VERIFY  "dr7.gd", M_BASIC, 1, 0, .gd, SEL_CODE32, FL_FIXED
        mov     eax, dr7                ; GD was cleared by the delivery: no second #DB
        CHECK   "dr7.gd cleared", eax, DR7_FIXED
        CHECK_DR6 "dr7.gd dr6", DR6_BD

        ; right after MOV SS, with TF set: the fault is not held back, and DR6.BS is clear
        CLEAR_DR6
        SET_DR7 DR7_FIXED | DR7_GD
        ARM_RESUME .ssgd_done
        mov     ax, ss
        push    FL_FIXED | FL_TF
        popfd
        mov     ss, ax
.ssgd:  mov     eax, dr6
.ssgd_done:
        VERIFY  "mov ss; dr7.gd with tf", M_BASIC, 1, 0, .ssgd, SEL_CODE32, FL_FIXED | FL_TF
        CHECK_DR6 "mov ss; dr7.gd with tf dr6", DR6_BD
        CLEAR_DR6

        SET_DR7 DR7_FIXED
        CLEAR_DR6
        ret

        align   8
        dd      0, 0
wvar:   dd      0, 0
        dd      0, 0
rvar:   dd      0, 0, 0, 0
ssvar:  dd      0
array:  dd      0, 0, 0, 0

GUEST_END
