; exceptions: every exception vector the guest can provoke, delivered through the IDT, with
; its vector, error code and pushed frame (EIP, CS, EFLAGS, and ESP/SS after a privilege
; change), first in 32-bit protected mode and then in long mode (64-bit frames always hold
; SS:RSP). Faults must report the faulting instruction, traps the next one.
;
; Not covered: #MF/#XM (no x87/SSE yet), #MC, #VE, #CP; #AC (QEMU TCG does not implement
; alignment checking, so it cannot referee it); INT1/ICEBP (QEMU 7.2 TCG raises #UD for it).

%include "lib.inc"

; Spare GDT entries used here.
SEL_NP_DATA     equ SEL_FREE            ; data segment, not present: #NP on load
SEL_NP_STACK    equ SEL_FREE + 8        ; writable data segment, not present: #SS on SS load
SEL_TSS_B       equ SEL_FREE + 16       ; an available (not busy) 32-bit TSS
PD32            equ SCRATCH             ; 32-bit page directory (4 MiB pages)
UNMAPPED        equ 0x40000000          ; not mapped by either paging setup (above 1 GiB)
FLAGS_ARITH     equ FL_FIXED | FL_CF | FL_ZF  ; a recognisable EFLAGS value to fault with

main:
        call    enable_tss
        mov     eax, SEL_NP_DATA
        xor     ebx, ebx
        mov     ecx, 0xfffff
        mov     dx, 0xc013              ; present bit clear
        call    set_desc
        mov     eax, SEL_NP_STACK
        call    set_desc
        mov     eax, SEL_TSS_B
        mov     ebx, tss_b
        mov     ecx, 103
        mov     dx, 0x0089
        call    set_desc

        call    prot32_tests
        mov     eax, long_tests
        xor     ebx, ebx
        call    run_in_long
        ret

; EAX = 2 * EAX + 2, the doubling done by SSE2 after an integer step (LEA: EFLAGS stay
; as the caller set them).
sse_probe:
        lea     eax, [eax + 1]
.sse:   movd    xmm0, eax
        paddd   xmm0, xmm0
        movd    eax, xmm0
        ret

; ======================================================================================
; 32-bit protected mode
; ======================================================================================

prot32_tests:
        ; #DE: fault, EIP of the DIV.
        mov     eax, 1
        xor     edx, edx
        xor     ecx, ecx
        ARM_RESUME .de_done
        push    FLAGS_ARITH
        popfd
.de:    div     ecx
.de_done:
        VERIFY  "de", M_BASIC, 0, 0, .de, SEL_CODE32, FLAGS_ARITH

        ; #DB from EFLAGS.TF: the instruction after the POPF that sets TF runs, then the trap
        ; reports the next EIP with TF set in the pushed EFLAGS and DR6.BS set.
        xor     eax, eax
        mov     dr6, eax
        mov     dword [probe], 0
        ARM_RESUME .tf_done
        push    FLAGS_ARITH | FL_TF
        popfd
        mov     dword [probe], 0x1234
.tf_next:
        nop
.tf_done:
        VERIFY  "db tf", M_BASIC, 1, 0, .tf_next, SEL_CODE32, FLAGS_ARITH | FL_TF
        CHECK   "db tf ran the instruction", dword [probe], 0x1234
        mov     eax, dr6
        and     eax, 0x400f             ; BS and the four breakpoint bits
        CHECK   "db tf dr6.bs", eax, 0x4000

        ; #BP: a trap, EIP after INT3; IRET returns there.
        ARM_IRET
        push    FLAGS_ARITH
        popfd
        int3
.bp_next:
        VERIFY  "bp", M_BASIC, 3, 0, .bp_next, SEL_CODE32, FLAGS_ARITH

        ; #OF: INTO traps only with OF set.
        ARM_IRET
        push    FL_FIXED
        popfd
        into
        DISARM
        CHECK   "into without of", dword [exc_count], 0
        ARM_IRET
        push    FL_FIXED | FL_OF
        popfd
        into
.of_next:
        VERIFY  "of", M_BASIC, 4, 0, .of_next, SEL_CODE32, FL_FIXED | FL_OF

        ; #BR: BOUND faults when the index is outside [lower, upper].
        ARM_IRET
        mov     eax, 20
        bound   eax, [bounds]
        DISARM
        CHECK   "bound in range", dword [exc_count], 0
        mov     eax, 31
        ARM_RESUME .br_done
        push    FL_FIXED
        popfd
.br:    bound   eax, [bounds]
.br_done:
        VERIFY  "br", M_BASIC, 5, 0, .br, SEL_CODE32, FL_FIXED

        ; #UD
        ARM_RESUME .ud_done
        push    FLAGS_ARITH
        popfd
.ud:    ud2
.ud_done:
        VERIFY  "ud", M_BASIC, 6, 0, .ud, SEL_CODE32, FLAGS_ARITH

        ; #NM: an x87 instruction with CR0.TS set; WAIT too when CR0.MP is set.
        mov     eax, cr0
        or      eax, CR0_TS | CR0_MP
        and     eax, ~CR0_EM
        mov     cr0, eax
        ARM_RESUME .nm_done
        push    FL_FIXED
        popfd
.nm:    fninit
.nm_done:
        VERIFY  "nm fninit", M_BASIC, 7, 0, .nm, SEL_CODE32, FL_FIXED
        ARM_RESUME .nm_wait_done
        push    FL_FIXED
        popfd
.nm_wait:
        fwait
.nm_wait_done:
        VERIFY  "nm wait", M_BASIC, 7, 0, .nm_wait, SEL_CODE32, FL_FIXED
        clts
        mov     eax, cr0
        CHECK   "clts", eax, CR0_PE | CR0_MP | 0x10  ; ET (bit 4) is hardwired on
        mov     eax, cr0
        and     eax, ~CR0_MP
        mov     cr0, eax

        ; #UD: an SSE instruction with CR4.OSFXSR clear; then the same code, with OSFXSR
        ; set, runs. (crane86 reads OSFXSR when an SSE block runs, not when it is
        ; translated, so the second call runs the first call's translation.)
        mov     eax, cr4
        push    eax
        and     eax, ~CR4_OSFXSR
        mov     cr4, eax
        ARM_RESUME .sse_ud_done
        push    FL_FIXED
        popfd
        mov     eax, 5
        call    sse_probe
.sse_ud_done:
        VERIFY  "ud sse", M_BASIC, 6, 0, sse_probe.sse, SEL_CODE32, FL_FIXED
        mov     eax, cr4
        or      eax, CR4_OSFXSR
        mov     cr4, eax
        ARM_IRET
        mov     eax, 5
        call    sse_probe
        DISARM
        CHECK   "sse with osfxsr", dword [exc_count], 0
        CHECK   "sse result", eax, 12
        pop     eax
        mov     cr4, eax

        ; #DF: #DE whose gate is not present raises #NP, and two contributory exceptions
        ; make #DF with error code 0. Its saved CS:EIP is undefined: only vector and error
        ; code are checked.
        and     byte [idt32 + 0*8 + 5], 0x7f
        xor     edx, edx
        xor     ecx, ecx
        ARM_RESUME .df_done
        div     ecx
.df_done:
        or      byte [idt32 + 0*8 + 5], 0x80
        VERIFY  "df", M_VEC | M_ERR, 8, 0

        ; #TS: IRET with NT set returns to the task in TSS.link, which must be busy; an
        ; available TSS gives #TS with its selector.
        mov     word [tss32], SEL_TSS_B
        ARM_RESUME .ts_done
        push    FL_FIXED | FL_NT
        popfd
.ts:    iretd
.ts_done:
        mov     word [tss32], 0
        VERIFY  "ts", M_BASIC, 10, SEL_TSS_B, .ts, SEL_CODE32, FL_FIXED | FL_NT

        ; #NP: loading DS with a not-present segment.
        mov     ax, SEL_NP_DATA
        ARM_RESUME .np_done
        push    FL_FIXED
        popfd
.np:    mov     ds, ax
.np_done:
        VERIFY  "np", M_BASIC, 11, SEL_NP_DATA, .np, SEL_CODE32, FL_FIXED

        ; #SS: loading SS with a not-present segment (#SS, not #NP).
        mov     ax, SEL_NP_STACK
        ARM_RESUME .ss_done
        push    FL_FIXED
        popfd
.ss:    mov     ss, ax
.ss_done:
        VERIFY  "ss", M_BASIC, 12, SEL_NP_STACK, .ss, SEL_CODE32, FL_FIXED

        ; #GP: a selector beyond the GDT limit (error code: the selector).
        mov     ax, 0x1000
        ARM_RESUME .gp_done
        push    FL_FIXED
        popfd
.gp:    mov     es, ax
.gp_done:
        VERIFY  "gp selector", M_BASIC, 13, 0x1000, .gp, SEL_CODE32, FL_FIXED

        ; Ring 3: the frame gains ESP and SS from before the switch to TSS.ESP0.
        ; CLI with IOPL 0: #GP(0).
        ARM_RESUME .gp3_done
        mov     eax, .gp3
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.gp3:   cli
.gp3_done:
        VERIFY  "gp ring 3 cli", M_PRIV, 13, 0, .gp3, SEL_UCODE32 | 3, FL_FIXED, \
                USER_STACK_TOP, SEL_UDATA | 3

        ; INT n through a DPL 0 gate from ring 3: #GP with the IDT error code (vector*8 + 2).
        ARM_RESUME .gpint_done
        mov     eax, .gpint
        mov     ecx, USER_STACK_TOP - 16
        mov     edx, FLAGS_ARITH
        jmp     to_ring3
.gpint: int     0x06
.gpint_done:
        VERIFY  "gp int to dpl 0 gate", M_PRIV, 13, 6*8 + 2, .gpint, SEL_UCODE32 | 3, \
                FLAGS_ARITH, USER_STACK_TOP - 16, SEL_UDATA | 3

        ; INT n through a DPL 3 gate from ring 3: delivered, EIP after the INT.
        ARM_RESUME .int3x_done
        mov     eax, .int3x
        mov     ecx, USER_STACK_TOP - 4
        mov     edx, FL_FIXED | FL_OF
        jmp     to_ring3
.int3x: int     0x30
.int3x_next:
.int3x_done:
        VERIFY  "int 0x30 from ring 3", M_PRIV, 0x30, 0, .int3x_next, SEL_UCODE32 | 3, \
                FL_FIXED | FL_OF, USER_STACK_TOP - 4, SEL_UDATA | 3

        ; #PF under 32-bit paging (4 MiB pages: the first 8 MiB user, the next 8 MiB
        ; supervisor only, nothing above 16 MiB): not-present read and write, and a ring 3
        ; read of a supervisor page. CR2 holds the linear address.
        mov     edi, PD32
        mov     ecx, 1024
        xor     eax, eax
        cld
        rep stosd
        mov     dword [PD32 + 0], 0x000000 | PTE_P | PTE_W | PTE_U | PTE_PS
        mov     dword [PD32 + 4], 0x400000 | PTE_P | PTE_W | PTE_U | PTE_PS
        mov     dword [PD32 + 8], 0x800000 | PTE_P | PTE_W | PTE_PS
        mov     dword [PD32 + 12], 0xc00000 | PTE_P | PTE_W | PTE_PS
        mov     eax, cr4
        or      eax, CR4_PSE
        mov     cr4, eax
        mov     eax, PD32
        mov     cr3, eax
        mov     eax, cr0
        or      eax, CR0_PG
        mov     cr0, eax

        ARM_RESUME .pf_r_done
        push    FL_FIXED
        popfd
.pf_r:  mov     eax, [UNMAPPED + 0x123]
.pf_r_done:
        VERIFY  "pf read not present", M_BASIC, 14, 0, .pf_r, SEL_CODE32, FL_FIXED
        mov     eax, cr2
        CHECK   "pf read cr2", eax, UNMAPPED + 0x123
        ARM_RESUME .pf_w_done
        push    FL_FIXED
        popfd
.pf_w:  mov     dword [UNMAPPED + 0x2000], 1
.pf_w_done:
        VERIFY  "pf write not present", M_BASIC, 14, 2, .pf_w, SEL_CODE32, FL_FIXED
        mov     eax, cr2
        CHECK   "pf write cr2", eax, UNMAPPED + 0x2000
        ARM_RESUME .pf_u_done
        mov     eax, .pf_u
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3
.pf_u:  mov     eax, [SCRATCH + 0x10]
.pf_u_done:
        VERIFY  "pf user read supervisor", M_PRIV, 14, 5, .pf_u, SEL_UCODE32 | 3, FL_FIXED, \
                USER_STACK_TOP, SEL_UDATA | 3
        mov     eax, cr2
        CHECK   "pf user cr2", eax, SCRATCH + 0x10

        mov     eax, cr0
        and     eax, ~CR0_PG
        mov     cr0, eax
        mov     eax, cr4
        and     eax, ~CR4_PSE
        mov     cr4, eax
        ret

; ======================================================================================
; Long mode
; ======================================================================================

        bits    64
SEL_NP_DATA_64  equ SEL_NP_DATA
long_tests:
        ; #DE
        mov     eax, 1
        xor     edx, edx
        xor     ecx, ecx
        ARM_RESUME .de_done
        push    FLAGS_ARITH
        popfq
.de:    div     ecx
.de_done:
        VERIFY  "64 de", M_PRIV, 0, 0, .de, SEL_CODE64, FLAGS_ARITH, SP_AT_ARM, SEL_DATA

        ; #DB from TF
        ARM_RESUME .tf_done
        push    FLAGS_ARITH | FL_TF
        popfq
        mov     dword [rel probe], 0x5678
.tf_next:
        nop
.tf_done:
        VERIFY  "64 db tf", M_PRIV, 1, 0, .tf_next, SEL_CODE64, FLAGS_ARITH | FL_TF, \
                SP_AT_ARM, SEL_DATA

        ; #BP
        ARM_IRET
        push    FLAGS_ARITH
        popfq
        int3
.bp_next:
        VERIFY  "64 bp", M_BASIC | M_SS, 3, 0, .bp_next, SEL_CODE64, FLAGS_ARITH, 0, SEL_DATA

        ; INTO and BOUND do not exist in 64-bit mode: #UD.
        ARM_RESUME .into_done
        push    FL_FIXED | FL_OF
        popfq
.into:  db      0xce                    ; INTO
.into_done:
        VERIFY  "64 into is ud", M_BASIC, 6, 0, .into, SEL_CODE64, FL_FIXED | FL_OF

        ; #UD
        ARM_RESUME .ud_done
        push    FLAGS_ARITH
        popfq
.ud:    ud2
.ud_done:
        VERIFY  "64 ud", M_PRIV, 6, 0, .ud, SEL_CODE64, FLAGS_ARITH, SP_AT_ARM, SEL_DATA

        ; #NM
        mov     rax, cr0
        or      eax, CR0_TS
        mov     cr0, rax
        ARM_RESUME .nm_done
        push    FL_FIXED
        popfq
.nm:    fninit
.nm_done:
        VERIFY  "64 nm", M_BASIC, 7, 0, .nm, SEL_CODE64, FL_FIXED
        clts

        ; #DF through IST1: the #DE gate not present.
        lea     rbx, [rel idt64]
        and     byte [rbx + 0*16 + 5], 0x7f
        xor     edx, edx
        xor     ecx, ecx
        ARM_RESUME .df_done
        div     ecx
.df_done:
        lea     rbx, [rel idt64]
        or      byte [rbx + 0*16 + 5], 0x80
        VERIFY  "64 df", M_VEC | M_ERR, 8, 0

        ; #NP and #SS on segment loads
        mov     ax, SEL_NP_DATA
        ARM_RESUME .np_done
        push    FL_FIXED
        popfq
.np:    mov     ds, ax
.np_done:
        VERIFY  "64 np", M_BASIC, 11, SEL_NP_DATA, .np, SEL_CODE64, FL_FIXED
        mov     ax, SEL_NP_STACK
        ARM_RESUME .ss_done
        push    FL_FIXED
        popfq
.ss:    mov     ss, ax
.ss_done:
        VERIFY  "64 ss", M_BASIC, 12, SEL_NP_STACK, .ss, SEL_CODE64, FL_FIXED

        ; #GP: a non-canonical address (error code 0). (A stack access through a
        ; non-canonical RSP should be #SS(0), but QEMU 7.2 raises #GP(0) for it, so it is
        ; not checked.)
        mov     rax, 0x0000800000000000
        ARM_RESUME .gp_done
        push    FL_FIXED
        popfq
.gp:    mov     rbx, [rax]
.gp_done:
        VERIFY  "64 gp non-canonical", M_PRIV, 13, 0, .gp, SEL_CODE64, FL_FIXED, SP_AT_ARM, \
                SEL_DATA

        ; Ring 3 (64-bit code): CLI gives #GP(0), the frame holds the ring 3 SS:RSP.
        ARM_RESUME .gp3_done
        lea     rax, [rel .gp3]
        mov     ecx, USER_STACK_TOP - 8
        mov     edx, FLAGS_ARITH
        jmp     to_ring3_64
.gp3:   cli
.gp3_done:
        VERIFY  "64 gp ring 3 cli", M_PRIV, 13, 0, .gp3, SEL_UCODE64 | 3, FLAGS_ARITH, \
                USER_STACK_TOP - 8, SEL_UDATA | 3

        ; INT n from ring 3 through DPL 0 and DPL 3 gates. The error code is not checked:
        ; the SDM's format names the gate by vector (vector*8 + 2 = 0x32), but QEMU 7.2
        ; pushes vector*16 + 2 in long mode.
        ARM_RESUME .gpint_done
        lea     rax, [rel .gpint]
        mov     ecx, USER_STACK_TOP - 16
        mov     edx, FL_FIXED
        jmp     to_ring3_64
.gpint: int     0x06
.gpint_done:
        VERIFY  "64 gp int to dpl 0 gate", M_PRIV & ~M_ERR, 13, 6*8 + 2, .gpint, SEL_UCODE64 | 3, \
                FL_FIXED, USER_STACK_TOP - 16, SEL_UDATA | 3
        ARM_RESUME .int3x_done
        lea     rax, [rel .int3x]
        mov     ecx, USER_STACK_TOP - 24
        mov     edx, FL_FIXED
        jmp     to_ring3_64
.int3x: int     0x30
.int3x_next:
.int3x_done:
        VERIFY  "64 int 0x30 from ring 3", M_PRIV, 0x30, 0, .int3x_next, SEL_UCODE64 | 3, \
                FL_FIXED, USER_STACK_TOP - 24, SEL_UDATA | 3

        ; #PF: above the 1 GiB the identity map covers; a ring 3 write to a read-only page
        ; (error code P|W|U = 7) after making the 2 MiB page at SCRATCH read-only.
        mov     rax, UNMAPPED + 0x321
        ARM_RESUME .pf_done
        push    FL_FIXED
        popfq
.pf:    mov     rbx, [rax]
.pf_done:
        VERIFY  "64 pf read not present", M_PRIV, 14, 0, .pf, SEL_CODE64, FL_FIXED, SP_AT_ARM, \
                SEL_DATA
        mov     rax, cr2
        CHECK   "64 pf cr2", rax, UNMAPPED + 0x321
        and     qword [PD_ID + 8 * (SCRATCH >> 21)], ~PTE_W
        invlpg  [SCRATCH]
        ARM_RESUME .pfu_done
        lea     rax, [rel .pfu]
        mov     ecx, USER_STACK_TOP
        mov     edx, FL_FIXED
        jmp     to_ring3_64
.pfu:   mov     dword [SCRATCH + 0x40], 1
.pfu_done:
        VERIFY  "64 pf user write read-only", M_PRIV, 14, 7, .pfu, SEL_UCODE64 | 3, FL_FIXED, \
                USER_STACK_TOP, SEL_UDATA | 3
        mov     rax, cr2
        CHECK   "64 pf user cr2", rax, SCRATCH + 0x40
        or      qword [PD_ID + 8 * (SCRATCH >> 21)], PTE_W
        invlpg  [SCRATCH]
        ret

        bits    32

        align   8
probe:  dd      0                       ; written by an instruction under test
bounds: dd      10, 30                  ; BOUND's lower and upper limits (inclusive)
        align   16
tss_b:  times   104 db 0

GUEST_END
