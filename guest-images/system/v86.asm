; v86: virtual-8086 mode, entered by IRET with EFLAGS.VM set, and the I/O permission
; bitmap of the TSS.
; - v8086 code runs with real-mode addressing (segment * 16 + offset);
; - IN/OUT in v8086 mode are checked against the bitmap whatever IOPL is: ports whose bits
;   are clear work, a port whose bit is set gives #GP(0), and a word access needs the bits
;   of both bytes clear;
; - with IOPL < 3, INT n and CLI give #GP(0); with IOPL = 3, INT n goes through the
;   protected-mode IDT to ring 0, pushing GS, FS, DS, ES, SS, ESP, EFLAGS, CS, EIP;
; - PUSHF and POPF with IOPL < 3 give #GP(0); with IOPL = 3 PUSHFD stores VM as 0 and POPF
;   changes the other flags but not IOPL;
; - INT3 is not IOPL-sensitive: it always goes through the IDT, whose DPL-0 gate 3 then
;   gives #GP(3 * 8 + 2);
; - REP OUTSB and REP INSB to an allowed port run to the end; OUTSB to a denied port is #GP(0);
; - the same bitmap at ring 3 of protected mode with IOPL 0: allowed and denied ports.
; Each test ends in an exception (an INT 0x30 or the #GP under test) whose frame is checked:
; its EIP tells which instruction stopped the code.

%include "lib.inc"

SEL_TSS_IO      equ SEL_FREE
V86_SEG         equ LOW_CODE >> 4       ; CS of the v8086 code
V86_STACK_SEG   equ 0x0600              ; SS:SP = 0x600:0x1000 (linear 0x7000)
V86_SP          equ 0x1000
V86_DATA_SEG    equ 0x1234
ALLOWED_PORT    equ 0x80                ; bit clear in the bitmap
DENIED_PORT     equ 0x84                ; bit set
SPLIT_PORT      equ 0x87                ; 0x87 allowed, 0x88 denied: a word access faults
FL_DF           equ 1 << 10
V86_DATA        equ V86_DATA_SEG << 4   ; linear address of DS:0 in the v8086 code
%define OFF(x)  ((x) - v86_code)        ; offset of v8086 code in its segment

main:
        ; the TSS with an I/O bitmap: everything denied except 0x80..0x83 and 0x87
        mov     dword [tss_io + 4], STACK0_TOP
        mov     dword [tss_io + 8], SEL_DATA
        mov     word [tss_io + 102], iomap - tss_io
        mov     edi, iomap
        mov     eax, 0xffffffff
        mov     ecx, 8192 / 4
        cld
        rep stosd
        and     byte [iomap + ALLOWED_PORT / 8], ~0x0f        ; 0x80-0x83
        and     byte [iomap + SPLIT_PORT / 8], ~(1 << (SPLIT_PORT & 7))
        mov     eax, SEL_TSS_IO
        mov     ebx, tss_io
        mov     ecx, iomap_end - tss_io - 1
        mov     dx, 0x0089
        call    set_desc
        mov     ax, SEL_TSS_IO
        call    load_tr

        mov     esi, v86_code
        mov     edi, LOW_CODE
        mov     ecx, v86_code_end - v86_code
        rep movsb

        ; real-mode addressing: write DS:0x10 with DS = 0x1234 (linear 0x12350)
        mov     byte [0x12350], 0
        ARM_RESUME .addr_done
        mov     eax, OFF(v86_addressing)
        mov     edx, FL_FIXED | FL_VM | FL_IOPL3
        jmp     enter_v86
.addr_done:
        VERIFY  "v86 int 0x30 with iopl 3 reaches the idt", M_PRIV | M_SEGS, 0x30, 0, \
                OFF(v86_addressing.int) + 2, V86_SEG, FL_FIXED | FL_VM | FL_IOPL3, V86_SP, \
                V86_STACK_SEG, 0, V86_DATA_SEG, 0, 0
        CHECK   "v86 real-mode addressing", dword [0x12350], 0x5a

        ; IOPL 0: OUT to an allowed port works, then INT faults
        ARM_RESUME .out_ok_done
        mov     eax, OFF(v86_out_allowed)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.out_ok_done:
        VERIFY  "v86 out allowed port, then int with iopl 0 is #gp", M_PRIV, 13, 0, \
                OFF(v86_out_allowed.int), V86_SEG, FL_FIXED | FL_VM, V86_SP, V86_STACK_SEG
        ; denied port, with IOPL 0 and with IOPL 3
        ARM_RESUME .deny_done
        mov     eax, OFF(v86_out_denied)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.deny_done:
        VERIFY  "v86 out denied port is #gp", M_PRIV, 13, 0, OFF(v86_out_denied), V86_SEG, \
                FL_FIXED | FL_VM, V86_SP, V86_STACK_SEG
        ARM_RESUME .deny3_done
        mov     eax, OFF(v86_out_denied)
        mov     edx, FL_FIXED | FL_VM | FL_IOPL3
        jmp     enter_v86
.deny3_done:
        VERIFY  "v86 out denied port is #gp even with iopl 3", M_PRIV, 13, 0, \
                OFF(v86_out_denied), V86_SEG, FL_FIXED | FL_VM | FL_IOPL3, V86_SP, \
                V86_STACK_SEG
        ; IN from an allowed port, then a word OUT straddling an allowed and a denied port
        ARM_RESUME .split_done
        mov     eax, OFF(v86_split)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.split_done:
        VERIFY  "v86 in allowed, word out half denied is #gp", M_PRIV, 13, 0, \
                OFF(v86_split.out), V86_SEG, FL_FIXED | FL_VM, V86_SP, V86_STACK_SEG
        ; CLI with IOPL 0
        ARM_RESUME .cli_done
        mov     eax, OFF(v86_cli)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.cli_done:
        VERIFY  "v86 cli with iopl 0 is #gp", M_PRIV, 13, 0, OFF(v86_cli), V86_SEG, \
                FL_FIXED | FL_VM, V86_SP, V86_STACK_SEG

        ; PUSHF and POPF with IOPL 0
        ARM_RESUME .pushf_done
        mov     eax, OFF(v86_pushf)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.pushf_done:
        VERIFY  "v86 pushf with iopl 0 is #gp", M_PRIV, 13, 0, OFF(v86_pushf), V86_SEG, \
                FL_FIXED | FL_VM, V86_SP, V86_STACK_SEG
        ARM_RESUME .popf_done
        mov     eax, OFF(v86_popf)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.popf_done:
        VERIFY  "v86 popf with iopl 0 is #gp", M_PRIV, 13, 0, OFF(v86_popf) + 1, V86_SEG, \
                FL_FIXED | FL_VM, V86_SP - 2, V86_STACK_SEG
        ; IOPL 3: PUSHFD's image has VM clear; POPF sets DF but cannot clear IOPL
        mov     dword [V86_DATA + 0x20], 0
        ARM_RESUME .flags3_done
        mov     eax, OFF(v86_flags3)
        mov     edx, FL_FIXED | FL_VM | FL_IOPL3
        jmp     enter_v86
.flags3_done:
        VERIFY  "v86 popf with iopl 3 keeps iopl", M_PRIV, 0x30, 0, OFF(v86_flags3.int) + 2, \
                V86_SEG, FL_FIXED | FL_VM | FL_IOPL3 | FL_DF, V86_SP, V86_STACK_SEG
        CHECK   "v86 pushfd image", dword [V86_DATA + 0x20], FL_FIXED | FL_IOPL3
        ; INT3 with IOPL 0 and 3: the DPL-0 gate decides, not IOPL
        ARM_RESUME .int3_done
        mov     eax, OFF(v86_int3)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.int3_done:
        VERIFY  "v86 int3 with iopl 0 reaches the dpl 0 gate", M_PRIV, 13, 3 * 8 + 2, \
                OFF(v86_int3), V86_SEG, FL_FIXED | FL_VM, V86_SP, V86_STACK_SEG
        ARM_RESUME .int3_3_done
        mov     eax, OFF(v86_int3)
        mov     edx, FL_FIXED | FL_VM | FL_IOPL3
        jmp     enter_v86
.int3_3_done:
        VERIFY  "v86 int3 with iopl 3 reaches the dpl 0 gate", M_PRIV, 13, 3 * 8 + 2, \
                OFF(v86_int3), V86_SEG, FL_FIXED | FL_VM | FL_IOPL3, V86_SP, V86_STACK_SEG
        ; REP OUTSB / REP INSB to an allowed port, then OUTSB to a denied one
        mov     dword [V86_DATA + 0x30], 0xffffffff
        mov     dword [V86_DATA + 0x34], 0xffffffff
        ARM_RESUME .str_done
        mov     eax, OFF(v86_string_io)
        mov     edx, FL_FIXED | FL_VM
        jmp     enter_v86
.str_done:
        VERIFY  "v86 outsb to a denied port is #gp", M_PRIV, 13, 0, OFF(v86_string_io.outs), \
                V86_SEG, FL_FIXED | FL_VM, V86_SP, V86_STACK_SEG
        CHECK   "v86 rep outsb si and cx", dword [V86_DATA + 0x30], 0x43
        CHECK   "v86 rep insb di and cx", dword [V86_DATA + 0x34], 0x52

        ; protected mode ring 3, IOPL 0: the same bitmap decides
        ARM_RESUME .r3_done
        mov     eax, ring3_io
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.r3_done:
        VERIFY  "ring 3 out allowed then denied port", M_PRIV, 13, 0, ring3_io.denied, \
                SEL_UCODE32 | 3, FL_FIXED, USER_STACK_TOP, SEL_UDATA | 3
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

; Ring 3 protected-mode I/O.
ring3_io:
        mov     al, 0
        out     ALLOWED_PORT, al
.denied:
        out     DENIED_PORT, al
        int     0x30

; The v8086 code, copied to LOW_CODE.
        bits    16
v86_code:
v86_addressing:
        mov     byte [0x10], 0x5a       ; DS = V86_DATA_SEG
.int:   int     0x30
v86_out_allowed:
        mov     al, 0
        out     ALLOWED_PORT, al
.int:   int     0x30
v86_out_denied:
        out     DENIED_PORT, al
        int     0x30
v86_split:
        in      al, ALLOWED_PORT
        mov     dx, SPLIT_PORT
        out     dx, al                  ; one byte: allowed
.out:   out     dx, ax                  ; 0x87 and 0x88: denied
        int     0x30
v86_cli:
        cli
        int     0x30
v86_pushf:
        pushf
        int     0x30
v86_popf:
        push    ax
        popf
        int     0x30
v86_flags3:
        pushfd
        pop     eax
        mov     [0x20], eax
        push    word FL_DF              ; IOPL 0 in the image: ignored
        popf
.int:   int     0x30
v86_int3:
        int3
        int     0x30
v86_string_io:
        mov     si, 0x40
        mov     cx, 3
        mov     dx, ALLOWED_PORT
        rep outsb
        mov     [0x30], si
        mov     [0x32], cx
        mov     di, 0x50
        mov     cx, 2
        push    ds
        pop     es
        rep insb
        mov     [0x34], di
        mov     [0x36], cx
        mov     dx, DENIED_PORT
.outs:  outsb
        int     0x30
v86_code_end:
        bits    32

        align   16
tss_io: times   104 db 0
iomap:  times   8192 db 0xff
        db      0xff                    ; the byte after the bitmap must be all ones
iomap_end:

GUEST_END
