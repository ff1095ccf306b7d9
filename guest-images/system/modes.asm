; modes: the transitions between operating modes and the far transfers that make them.
; - 32-bit protected mode: far JMP/CALL (direct and through memory) and far RET, checking the
;   CS:EIP pushed by a far CALL;
; - 16-bit protected mode (a 16-bit code segment): the default operand size is 16 bits;
; - protected -> real mode (16-bit segment, clear CR0.PE, far JMP) and back (set CR0.PE,
;   far JMP to a 32-bit segment): in real mode CR0.PE reads 0, CS is a paragraph number,
;   linear = segment * 16 + offset, and INT n goes through the IVT (IDTR base 0) pushing
;   FLAGS, CS, IP;
; - protected -> long mode (CR4.PAE, CR3, EFER.LME, CR0.PG, far JMP to a 64-bit segment):
;   EFER.LMA is set and 64-bit operations work; 64-bit -> compatibility mode by far RET and
;   by far CALL through memory, and back by far JMP and far RET; in compatibility mode 0x48
;   is DEC EAX, in 64-bit mode it is a REX prefix;
; - long mode -> protected mode (far RET to a 32-bit segment, CR0.PG = 0, EFER.LME = 0):
;   EFER.LMA reads 0 again.

%include "lib.inc"

%define LOW(x) (LOW_CODE + (x) - rm_start)   ; address of real-mode code once copied low
RM_STACK        equ 0x7000              ; real-mode stack top (segment 0)
RM_RESULTS      equ 0x7800              ; what the real-mode code observed
RM_INT_VECTOR   equ 0x40

main:
        call    far_transfers_32
        call    prot16
        call    real_mode
        mov     eax, long_tests
        xor     ebx, ebx
        call    run_in_long
        ; back in protected mode
        mov     ecx, MSR_EFER
        rdmsr
        and     eax, EFER_LMA | EFER_LME
        CHECK   "left long mode: efer.lma clear", eax, 0
        mov     eax, cr0
        and     eax, CR0_PG | CR0_PE
        CHECK   "left long mode: cr0.pg clear", eax, CR0_PE
        mov     eax, 5
        db      0x48                    ; DEC EAX in 32-bit code
        nop
        CHECK   "left long mode: 0x48 is dec eax", eax, 4
        ret

; ---- far transfers in 32-bit protected mode ----

far_transfers_32:
        mov     dword [probe], 0
        jmp     SEL_CODE32:.direct
        mov     dword [probe], 1        ; skipped by the far JMP
.direct:
        CHECK   "far jmp ptr16:32", dword [probe], 0
        mov     ebx, esp
        call    SEL_CODE32:far_callee
.ret1:  mov     ecx, esp
        CHECK   "far call ptr16:32 pushed eip", dword [far_seen_eip], .ret1
        CHECK   "far call ptr16:32 pushed cs", dword [far_seen_cs], SEL_CODE32
        CHECK   "far ret restored esp", ecx, ebx
        mov     dword [far_ptr], far_callee
        mov     word [far_ptr + 4], SEL_CODE32
        call    far [far_ptr]
.ret2:  CHECK   "far call m16:32 pushed eip", dword [far_seen_eip], .ret2
        mov     dword [far_ptr], .via_mem
        jmp     far [far_ptr]
        mov     dword [probe], 2
.via_mem:
        CHECK   "far jmp m16:32", dword [probe], 0
        mov     ax, cs
        movzx   eax, ax
        CHECK   "cs after far transfers", eax, SEL_CODE32
        ret

; far_callee: records the return CS:EIP a far CALL pushed, returns with RETF.
far_callee:
        push    eax
        mov     eax, [esp + 4]
        mov     [far_seen_eip], eax
        mov     eax, [esp + 8]
        mov     [far_seen_cs], eax
        pop     eax
        retf

; ---- 16-bit protected mode ----

; prot16: far call to a 16-bit code segment (base 0, so the code must be below 64 KiB: it
; runs from the low copy), which measures how much a PUSH moves SP there.
prot16:
        call    copy_low
        mov     [saved_esp], esp
        call    SEL_CODE32:.thunk       ; a far frame for the 16-bit code's RETF to return to
        mov     ecx, esp
        CHECK   "16-bit protected mode: push moves sp by 2", dword [RM_RESULTS + 16], 2
        CHECK   "16-bit protected mode: back in 32-bit", ecx, dword [saved_esp]
        ret
.thunk:
        jmp     SEL_CODE16:LOW(pm16_probe)

; ---- real mode ----

real_mode:
        call    copy_low
        mov     edi, RM_RESULTS
        xor     eax, eax
        mov     ecx, 8
        rep stosd
        mov     byte [0x12350], 0
        ; IVT entry for RM_INT_VECTOR: offset, segment 0
        mov     word [RM_INT_VECTOR * 4], LOW(rm_int_handler)
        mov     word [RM_INT_VECTOR * 4 + 2], 0
        mov     [saved_esp], esp
        jmp     SEL_CODE16:LOW(pm16_to_real)
back_in_32:
        mov     ax, SEL_DATA
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     fs, ax
        mov     gs, ax
        mov     esp, [saved_esp]
        lidt    [idt32_ptr]
        mov     eax, cr0
        and     eax, CR0_PE
        CHECK   "real mode: cr0.pe read 0", dword [RM_RESULTS + 0], 0
        CHECK   "real mode: cs is 0", dword [RM_RESULTS + 4], 0
        CHECK   "real mode: ip of the low copy", dword [RM_RESULTS + 8], LOW(rm_here)
        CHECK   "real mode: es:0x10 with es=0x1234 is linear 0x12350", dword [0x12350], 0x5a
        CHECK   "real mode: int through the ivt ran", dword [RM_RESULTS + 12], 0xcafe
        CHECK   "real mode: int pushed ip", dword [RM_RESULTS + 20], LOW(rm_after_int)
        CHECK   "real mode: int pushed cs", dword [RM_RESULTS + 24], 0
        CHECK   "real mode: int pushed flags", dword [RM_RESULTS + 28], FL_FIXED | FL_CF
        CHECK   "back to protected mode: cr0.pe", eax, CR0_PE
        ret

; copy_low: copies the 16-bit code below to LOW_CODE.
copy_low:
        pushad
        mov     esi, rm_start
        mov     edi, LOW_CODE
        mov     ecx, rm_end - rm_start
        cld
        rep movsb
        popad
        ret

        bits    16
rm_start:
; pm16_probe: 16-bit protected mode; PUSH uses the 16-bit operand size.
pm16_probe:
        mov     ax, SEL_DATA16
        mov     ds, ax
        mov     ebx, esp
        push    ax
        sub     ebx, esp
        pop     ax
        mov     [RM_RESULTS + 16], ebx
        mov     ax, SEL_DATA
        mov     ds, ax
        o32 retf                        ; back to the 32-bit far caller

; pm16_to_real: 16-bit protected mode with real-mode-like segments, then real mode.
pm16_to_real:
        mov     ax, SEL_DATA16
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     fs, ax
        mov     gs, ax
        mov     eax, cr0
        and     eax, ~CR0_PE
        mov     cr0, eax
        jmp     0:LOW(.real)            ; loads CS with a real-mode paragraph
.real:  xor     ax, ax
        mov     ds, ax
        mov     es, ax
        mov     ss, ax
        mov     sp, RM_STACK
        lidt    [LOW(rm_idtr)]
        mov     eax, cr0
        and     eax, CR0_PE
        mov     [RM_RESULTS + 0], eax
        mov     ax, cs
        mov     [RM_RESULTS + 4], ax
        call    rm_here
rm_here:
        pop     ax
        mov     [RM_RESULTS + 8], ax
        mov     ax, 0x1234
        mov     es, ax
        mov     byte [es:0x10], 0x5a
        push    word FL_FIXED | FL_CF   ; known FLAGS for the INT to push
        popf
        int     RM_INT_VECTOR
rm_after_int:
        ; back to protected mode: CR0.PE, then a far JMP with a 32-bit offset
        mov     eax, cr0
        or      eax, CR0_PE
        mov     cr0, eax
        jmp     dword SEL_CODE32:back_in_32

; rm_int_handler: records the IVT delivery's frame (IP, CS, FLAGS) and returns with IRET.
rm_int_handler:
        mov     bp, sp
        mov     word [RM_RESULTS + 12], 0xcafe
        mov     ax, [bp]
        mov     [RM_RESULTS + 20], ax
        mov     ax, [bp + 2]
        mov     [RM_RESULTS + 24], ax
        mov     ax, [bp + 4]
        mov     [RM_RESULTS + 28], ax
        iret

rm_idtr:
        dw      0x3ff
        dd      0
rm_end:
        bits    32

; ======================================================================================
; Long mode
; ======================================================================================

        bits    64
long_tests:
        mov     ecx, MSR_EFER
        rdmsr
        and     eax, EFER_LMA | EFER_LME
        CHECK   "long mode: efer.lma and lme", rax, EFER_LMA | EFER_LME
        mov     rax, 0x123456789
        add     rax, rax
        mov     rdx, 0x2468acf12
        CHECK   "long mode: 64-bit add", rax, rdx
        mov     ax, cs
        movzx   eax, ax
        CHECK   "long mode: cs", rax, SEL_CODE64
        mov     eax, 5
        db      0x48                    ; REX.W prefix of the NOP in 64-bit code
        nop
        CHECK   "long mode: 0x48 is rex", rax, 5

        ; 64-bit -> compatibility mode by far return, back by far jump.
        mov     rbx, rsp
        push    SEL_CODE32
        lea     rax, [rel compat_by_retf]
        push    rax
        retfq
.back1: mov     rcx, rsp
        CHECK   "compat mode: 0x48 was dec eax", qword [rel compat_result], 4
        CHECK   "compat mode: efer.lma still set", qword [rel compat_lma], EFER_LMA
        CHECK   "back in 64-bit mode by far jmp", rcx, rbx

        ; by far CALL through memory (m16:32) and back by far RET (32-bit)
        mov     qword [rel compat_result], 0
        lea     rax, [rel compat_by_call]
        mov     [rel far_ptr], eax
        mov     word [rel far_ptr + 4], SEL_CODE32
        call    dword far [rel far_ptr] ; m16:32 (REX.W would make it m16:64)
        mov     rcx, rsp
        CHECK   "compat mode by far call: 0x48 was dec eax", qword [rel compat_result], 4
        CHECK   "back in 64-bit mode by 32-bit far ret", rcx, rbx
        ret

        bits    32
; compat_by_retf: compatibility mode, entered by RETFQ; returns with a far JMP.
compat_by_retf:
        mov     eax, 5
        db      0x48                    ; DEC EAX here
        nop
        mov     [compat_result], eax
        mov     ecx, MSR_EFER
        rdmsr
        and     eax, EFER_LMA
        mov     [compat_lma], eax
        jmp     SEL_CODE64:long_tests.back1

; compat_by_call: compatibility mode, entered by a far CALL from 64-bit code (which pushed
; a 4-byte CS and EIP); returns with a 32-bit RETF.
compat_by_call:
        mov     eax, 5
        db      0x48
        nop
        mov     [compat_result], eax
        retf

        align   8
probe:          dd      0
far_seen_eip:   dd      0
far_seen_cs:    dd      0
saved_esp:      dd      0
far_ptr:        dd      0, 0
compat_result:  dq      0
compat_lma:     dq      0

GUEST_END
