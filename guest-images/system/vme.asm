; vme: the virtual-8086 mode extensions (CR4.VME) and protected-mode virtual interrupts
; (CR4.PVI), SDM Vol. 3 20.3 and 20.4.
; Checked with QEMU as the referee (its answers agree with the SDM here):
; - with CR4.VME and IOPL < 3, INT n whose bit in the TSS's software interrupt redirection
;   bitmap is set gives #GP(0); with IOPL = 3 it goes through the IDT (methods 3 and 4 of
;   SDM table 20-2); without VME, INT n with IOPL 3 goes through the IDT whatever the bitmap;
; - with CR4.VME and IOPL < 3 the 32-bit forms PUSHFD, POPFD and IRETD stay #GP(0);
; - with CR4.VME and IOPL = 3 PUSHF pushes the real IF and IOPL, and VIF/VIP are kept;
; - with CR4.PVI at ring 3, POPFD is not virtualised (IF is silently kept).
; QEMU 7.2 TCG does not implement VME or PVI (it does not advertise them, accepts the CR4
; bits and ignores them), so the checks of the extensions themselves run only with
; `sdm-only` on the multiboot command line, which the harness passes to crane86 alone:
; - CPUID.1:EDX.VME is set;
; - CLI and STI with VME and IOPL < 3 clear and set VIF, not IF; STI with VIP set is
;   #GP(0);
; - PUSHF pushes VIF as IF and 3 as IOPL; POPF loads VIF from the image's IF and leaves IF
;   and IOPL alone; POPF of an image with TF set, or with IF set while VIP is set, is #GP(0)
;   (the stack pointer unchanged);
; - the 16-bit IRET likewise, #GP(0) for TF in the image;
; - INT n whose redirection bit is clear goes to the task's own vector table at linear 0,
;   inside virtual-8086 mode: FLAGS (IF = VIF, IOPL = 3 when IOPL < 3), CS and IP on the
;   task's stack, VIF (IOPL < 3) or IF (IOPL = 3) and TF cleared;
; - with CR4.PVI at ring 3 and IOPL 0, CLI and STI clear and set VIF; STI with VIP is #GP(0).
; QEMU 7.2 also ignores VIF and VIP in the image of an IRET at CPL 0 to protected mode
; (the SDM loads them), so the ring-3 tests that start with VIF or VIP set are sdm-only too.
; Each v8086 test ends in an exception (INT 0x30, whose redirection bit is set, or the #GP
; under test), whose frame is checked.

%include "lib.inc"

SEL_TSS_VME     equ SEL_FREE
V86_SEG         equ LOW_CODE >> 4       ; CS of the v8086 code
V86_STACK_SEG   equ 0x0600              ; SS:SP = 0x600:0x1000 (linear 0x7000)
V86_SP          equ 0x1000
V86_STACK       equ (V86_STACK_SEG << 4) + V86_SP
V86_DATA_SEG    equ 0x1234
V86_DATA        equ V86_DATA_SEG << 4   ; linear address of DS:0 in the v8086 code
EXIT_VECTOR     equ 0x30                ; redirection bit set: leaves virtual-8086 mode
REDIR_VECTOR    equ 0x31                ; redirection bit clear: the task's own handler
CR4_VME         equ 1 << 0
CR4_PVI         equ 1 << 1
FL_DF           equ 1 << 10
FL_VIF          equ 1 << 19
FL_VIP          equ 1 << 20
FL_V86          equ FL_FIXED | FL_VM
%define OFF(x)  ((x) - v86_code)        ; offset of v8086 code in its segment

; V86 code, eflags: runs the v8086 code at `code` with EFLAGS `eflags` until the exception
; that ends it (recorded for VERIFY).
%macro V86 2
        ARM_RESUME %%done
        mov     eax, OFF(%1)
        mov     edx, %2
        jmp     enter_v86
%%done:
%endmacro

; RING3 code, eflags: runs the ring-3 code at `code` with EFLAGS `eflags` until the
; exception that ends it.
%macro RING3 2
        ARM_RESUME %%done
        mov     eax, %1
        mov     ecx, USER_STACK_TOP
        mov     edx, %2
        jmp     to_ring3
%%done:
%endmacro

; V86_GP "name", code, eip, eflags, sp: the v8086 code ended in #GP(0) at `eip` with this
; EFLAGS and SP in the frame.
%macro V86_GP 5
        VERIFY  %1, M_PRIV, 13, 0, %3, V86_SEG, %4, %5, V86_STACK_SEG
%endmacro

; CHECK_WORD "name", address, want: CHECK of the word at `address`.
%macro CHECK_WORD 3
        push    eax
        movzx   eax, word [%2]
        CHECK   %1, eax, %3
        pop     eax
%endmacro

; CR4_SET bits / CR4_CLEAR bits
%macro CR4_SET 1
        mov     eax, cr4
        or      eax, %1
        mov     cr4, eax
%endmacro
%macro CR4_CLEAR 1
        mov     eax, cr4
        and     eax, ~(%1)
        mov     cr4, eax
%endmacro

main:
        ; the TSS: ring-0 stack, the redirection bitmap (only EXIT_VECTOR's bit set) and
        ; an I/O bitmap denying every port
        mov     dword [tss_vme + 4], STACK0_TOP
        mov     dword [tss_vme + 8], SEL_DATA
        mov     word [tss_vme + 102], iomap - tss_vme
        or      byte [redirection + EXIT_VECTOR / 8], 1 << (EXIT_VECTOR & 7)
        mov     eax, SEL_TSS_VME
        mov     ebx, tss_vme
        mov     ecx, iomap_end - tss_vme - 1
        mov     dx, 0x0089
        call    set_desc
        mov     ax, SEL_TSS_VME
        call    load_tr

        mov     esi, v86_code
        mov     edi, LOW_CODE
        mov     ecx, v86_code_end - v86_code
        cld
        rep movsb
        ; the task's vector table entry for REDIR_VECTOR
        mov     word [REDIR_VECTOR * 4], OFF(v86_handler)
        mov     word [REDIR_VECTOR * 4 + 2], V86_SEG

        ; without VME, INT n with IOPL 3 ignores the bitmap
        V86     v86_int_redir, FL_V86 | FL_IOPL3
        VERIFY  "no vme: int with iopl 3 reaches the idt", M_PRIV, REDIR_VECTOR, 0, \
                OFF(v86_int_redir) + 2, V86_SEG, FL_V86 | FL_IOPL3, V86_SP, V86_STACK_SEG

        CR4_SET CR4_VME
        V86     v86_exit, FL_V86
        V86_GP  "vme: int with its redirection bit set and iopl 0 is #gp", v86_exit, \
                OFF(v86_exit), FL_V86, V86_SP
        V86     v86_exit, FL_V86 | FL_IOPL3
        VERIFY  "vme: int with its redirection bit set and iopl 3 reaches the idt", M_PRIV, \
                EXIT_VECTOR, 0, OFF(v86_exit) + 2, V86_SEG, FL_V86 | FL_IOPL3, V86_SP, \
                V86_STACK_SEG
        V86     v86_pushfd, FL_V86 | FL_VIF
        V86_GP  "vme: pushfd with iopl 0 is #gp", v86_pushfd, OFF(v86_pushfd), \
                FL_V86 | FL_VIF, V86_SP
        V86     v86_popfd, FL_V86
        V86_GP  "vme: popfd with iopl 0 is #gp", v86_popfd, OFF(v86_popfd.popfd), FL_V86, \
                V86_SP - 4
        ; IOPL 3: the real flags, VIF and VIP untouched
        mov     dword [V86_DATA + 0x20], 0
        V86     v86_pushf, FL_V86 | FL_IOPL3 | FL_VIF | FL_VIP
        VERIFY  "vme: pushf with iopl 3 keeps vif and vip", M_PRIV, EXIT_VECTOR, 0, \
                OFF(v86_pushf.int) + 2, V86_SEG, FL_V86 | FL_IOPL3 | FL_VIF | FL_VIP, \
                V86_SP, V86_STACK_SEG
        CHECK   "vme: pushf image with iopl 3", dword [V86_DATA + 0x20], FL_FIXED | FL_IOPL3
        ; (this also clears VIF and VIP at ring 0 again: an exception from virtual-8086
        ; mode keeps them, and QEMU's IRET at CPL 0 does not load them, see below)
        V86     v86_iretd, FL_V86
        V86_GP  "vme: iretd with iopl 0 is #gp", v86_iretd, OFF(v86_iretd), FL_V86, V86_SP

        ; PVI leaves POPFD alone: IF is silently kept at ring 3 with IOPL 0
        CR4_SET CR4_PVI
        mov     dword [pvi_image], 0
        RING3   ring3_popfd, FL_FIXED
        VERIFY  "pvi: popfd keeps if", M_PRIV, EXIT_VECTOR, 0, ring3_popfd.int + 2, \
                SEL_UCODE32 | 3, FL_FIXED | FL_DF, USER_STACK_TOP, SEL_UDATA | 3
        CHECK   "pvi: pushfd image", dword [pvi_image], FL_FIXED | FL_DF
        CR4_CLEAR CR4_PVI

        call    sdm_requested
        test    eax, eax
        jz      .done
        call    sdm_tests
.done:  CR4_CLEAR CR4_VME | CR4_PVI
        ret

; sdm_tests: the extensions themselves, which QEMU 7.2 does not implement.
sdm_tests:
        mov     eax, 1
        cpuid
        and     edx, 1 << 1
        CHECK   "cpuid vme", edx, 1 << 1

        ; CLI and STI on VIF
        V86     v86_cli, FL_V86 | FL_VIF
        V86_GP  "vme: cli clears vif", v86_cli, OFF(v86_cli) + 1, FL_V86, V86_SP
        V86     v86_sti, FL_V86
        V86_GP  "vme: sti sets vif", v86_sti, OFF(v86_sti) + 1, FL_V86 | FL_VIF, V86_SP
        V86     v86_sti, FL_V86 | FL_VIP
        V86_GP  "vme: sti with vip is #gp", v86_sti, OFF(v86_sti), FL_V86 | FL_VIP, V86_SP

        ; PUSHF: IF = VIF, IOPL = 3
        mov     dword [V86_DATA + 0x20], 0
        V86     v86_pushf, FL_V86 | FL_VIF | FL_DF
        V86_GP  "vme: pushf", v86_pushf, OFF(v86_pushf.int), FL_V86 | FL_VIF | FL_DF, V86_SP
        CHECK   "vme: pushf image with vif", dword [V86_DATA + 0x20], \
                FL_FIXED | FL_IF | FL_IOPL3 | FL_DF
        V86     v86_pushf, FL_V86
        V86_GP  "vme: pushf again", v86_pushf, OFF(v86_pushf.int), FL_V86, V86_SP
        CHECK   "vme: pushf image without vif", dword [V86_DATA + 0x20], \
                FL_FIXED | FL_IOPL3

        ; POPF: VIF from IF; IF and IOPL kept; TF, or IF with VIP, is #GP(0)
        V86     v86_popf_if, FL_V86
        V86_GP  "vme: popf sets vif", v86_popf_if, OFF(v86_popf_if.int), \
                FL_V86 | FL_VIF | FL_DF, V86_SP
        V86     v86_popf_clear, FL_V86 | FL_VIF
        V86_GP  "vme: popf clears vif", v86_popf_clear, OFF(v86_popf_clear.int), FL_V86, \
                V86_SP
        V86     v86_popf_tf, FL_V86
        V86_GP  "vme: popf with tf is #gp", v86_popf_tf, OFF(v86_popf_tf.popf), FL_V86, \
                V86_SP - 2
        V86     v86_popf_if, FL_V86 | FL_VIP
        V86_GP  "vme: popf setting if with vip is #gp", v86_popf_if, OFF(v86_popf_if.popf), \
                FL_V86 | FL_VIP, V86_SP - 2
        V86     v86_popf_clear, FL_V86 | FL_VIP
        V86_GP  "vme: popf clearing if with vip", v86_popf_clear, OFF(v86_popf_clear.int), \
                FL_V86 | FL_VIP, V86_SP

        ; IRET
        V86     v86_iret, FL_V86
        V86_GP  "vme: iret sets vif", v86_iret, OFF(v86_iret.target), \
                FL_V86 | FL_VIF | FL_DF, V86_SP
        V86     v86_iret_tf, FL_V86
        V86_GP  "vme: iret with tf is #gp", v86_iret_tf, OFF(v86_iret_tf.iret), FL_V86, \
                V86_SP - 6

        ; INT n redirected to the task's vector table, IOPL 0
        V86     v86_int_redir, FL_V86 | FL_VIF | FL_DF
        V86_GP  "vme: int redirected with iopl 0", v86_handler, OFF(v86_handler), \
                FL_V86 | FL_DF, V86_SP - 6
        CHECK_WORD "vme: redirected int pushes ip", V86_STACK - 6, OFF(v86_int_redir) + 2
        CHECK_WORD "vme: redirected int pushes cs", V86_STACK - 4, V86_SEG
        CHECK_WORD "vme: redirected int pushes vif as if", V86_STACK - 2, \
                FL_FIXED | FL_IF | FL_IOPL3 | FL_DF
        ; IOPL 3: the real FLAGS, VIF kept
        V86     v86_int_redir, FL_V86 | FL_IOPL3 | FL_VIF
        VERIFY  "vme: int redirected with iopl 3", M_PRIV, EXIT_VECTOR, 0, \
                OFF(v86_handler) + 2, V86_SEG, FL_V86 | FL_IOPL3 | FL_VIF, V86_SP - 6, \
                V86_STACK_SEG
        CHECK_WORD "vme: redirected int with iopl 3 pushes flags", V86_STACK - 2, \
                FL_FIXED | FL_IOPL3

        ; PVI: CLI and STI at ring 3 with IOPL 0
        CR4_SET CR4_PVI
        RING3   ring3_cli, FL_FIXED | FL_VIF
        VERIFY  "pvi: cli clears vif", M_PRIV, EXIT_VECTOR, 0, ring3_cli.int + 2, \
                SEL_UCODE32 | 3, FL_FIXED, USER_STACK_TOP, SEL_UDATA | 3
        RING3   ring3_sti, FL_FIXED
        VERIFY  "pvi: sti sets vif", M_PRIV, EXIT_VECTOR, 0, ring3_sti.int + 2, \
                SEL_UCODE32 | 3, FL_FIXED | FL_VIF, USER_STACK_TOP, SEL_UDATA | 3
        RING3   ring3_sti, FL_FIXED | FL_VIP
        VERIFY  "pvi: sti with vip is #gp", M_PRIV, 13, 0, ring3_sti, SEL_UCODE32 | 3, \
                FL_FIXED | FL_VIP, USER_STACK_TOP, SEL_UDATA | 3
        CR4_CLEAR CR4_PVI
        RING3   ring3_cli, FL_FIXED
        VERIFY  "no pvi: cli at ring 3 is #gp", M_PRIV, 13, 0, ring3_cli, SEL_UCODE32 | 3, \
                FL_FIXED, USER_STACK_TOP, SEL_UDATA | 3
        ret

; enter_v86: IRET into virtual-8086 mode at V86_SEG:AX with EFLAGS = EDX; segment registers
; DS = V86_DATA_SEG, ES = FS = GS = 0. Does not return.
enter_v86:
        push    dword 0                 ; GS
        push    dword 0                 ; FS
        push    dword V86_DATA_SEG      ; DS
        push    dword 0                 ; ES
        push    dword V86_STACK_SEG     ; SS
        push    dword V86_SP            ; ESP
        push    edx                     ; EFLAGS (VM set)
        push    dword V86_SEG           ; CS
        movzx   eax, ax
        push    eax                     ; EIP
        iretd

; Ring 3 protected-mode code.
ring3_popfd:
        push    dword FL_FIXED | FL_IF | FL_DF
        popfd
        pushfd
        pop     eax
        mov     [pvi_image], eax
.int:   int     EXIT_VECTOR
ring3_cli:
        cli
.int:   int     EXIT_VECTOR
ring3_sti:
        sti
.int:   int     EXIT_VECTOR

; The v8086 code, copied to LOW_CODE.
        bits    16
v86_code:
v86_exit:
        int     EXIT_VECTOR
v86_int_redir:
        int     REDIR_VECTOR
v86_handler:                            ; the task's handler of REDIR_VECTOR
        int     EXIT_VECTOR
v86_pushfd:
        pushfd
        int     EXIT_VECTOR
v86_popfd:
        push    eax
.popfd: popfd
        int     EXIT_VECTOR
v86_iretd:
        iretd
v86_pushf:
        pushf
        pop     ax
        mov     [0x20], ax
.int:   int     EXIT_VECTOR
v86_cli:
        cli
        int     EXIT_VECTOR
v86_sti:
        sti
        int     EXIT_VECTOR
v86_popf_if:
        push    word FL_FIXED | FL_IF | FL_IOPL3 | FL_DF
.popf:  popf
.int:   int     EXIT_VECTOR
v86_popf_clear:
        push    word FL_FIXED
        popf
.int:   int     EXIT_VECTOR
v86_popf_tf:
        push    word FL_FIXED | FL_TF
.popf:  popf
        int     EXIT_VECTOR
v86_iret:
        push    word FL_FIXED | FL_IF | FL_DF
        push    cs
        push    word OFF(.target)
        iret
.target:
        int     EXIT_VECTOR
v86_iret_tf:
        push    word FL_FIXED | FL_TF
        push    cs
        push    word OFF(v86_exit)
.iret:  iret
v86_code_end:
        bits    32

        align   4
pvi_image:
        dd      0
        align   16
tss_vme:
        times   104 db 0
redirection:
        times   32 db 0                 ; the software interrupt redirection bitmap
iomap:  times   8192 db 0xff
        db      0xff                    ; the byte after the bitmap must be all ones
iomap_end:

GUEST_END
