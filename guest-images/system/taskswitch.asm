; taskswitch: hardware task switches between two 32-bit TSSs.
; - JMP to a TSS selector: the current state is saved in the old TSS (EIP after the JMP,
;   general registers), the new task starts with the registers of its TSS, TR is the new
;   selector, EFLAGS.NT is clear, the old TSS becomes available and the new one busy, and
;   CR0.TS is set; a JMP back resumes the first task after its JMP;
; - CALL to a TSS selector: the new task runs with NT set and the caller's selector in its
;   TSS link field, the caller's TSS stays busy; IRET in the called task returns to the
;   caller (through the link, because NT is set) and frees the called TSS;
; - the same with a 16-bit (80286) TSS running 16-bit code: the task gets the words of its
;   TSS (AX, SP, IP), FS and GS are null (the format has no slots for them), and switching
;   away saves IP, FLAGS, the general registers and ES..DS as words, writing nothing past
;   the TSS's 44 bytes. The upper words of the registers are left unchecked: the SDM says
;   they are "modified and not maintained";
; - a fault through a task gate in the IDT: the handler task gets the error code on its
;   stack, the interrupted task's TSS holds the faulting EIP and is the back link, and IRET
;   returns to it (at the EIP the handler put in its TSS). The EFLAGS saved for the faulting
;   task are not checked: crane86 sets RF there, as in the stack frame of a fault, and QEMU
;   does not (`difftest qemu` takes QEMU's value there);
; - the T (debug trap) flag of a 32-bit TSS (SDM Vol. 3 7.2.1, 17.3.1.5): entering a task
;   whose TSS has it set by JMP, CALL, INT n through a task gate, an exception through a
;   task gate, an external interrupt (the PIT's IRQ 0) through a task gate, or IRET (back
;   to a caller whose TSS has it) raises #DB with DR6.BT after the switch, at the new
;   task's first instruction. QEMU 7.2 TCG ignores the flag, so these
;   checks run only with `sdm-only` (crane86 alone).

%include "lib.inc"

SEL_TASK        equ SEL_FREE
SEL_TASK16      equ SEL_FREE + 8
SEL_TASK_GP     equ SEL_FREE + 16
SEL_TASK_T      equ SEL_FREE + 24
T_STACK_TOP     equ 0x68000
TSS_T           equ 0x64            ; bit 0: the debug trap flag
DR6_BT          equ 1 << 15
VEC_IRQ0        equ 0x38            ; IRQ 0 once the 8259 is programmed (pic_init)
GP_STACK_TOP    equ 0x60000
BAD_SELECTOR    equ 0x1234          ; beyond the GDT's limit: loading it is #GP(0x1234)
TASK_STACK_TOP  equ 0x70000
; TSS field offsets
TSS_LINK        equ 0x00
TSS_EIP         equ 0x20
TSS_EFLAGS      equ 0x24
TSS_EAX         equ 0x28
TSS_EBX         equ 0x34
TSS_ESP         equ 0x38
TSS_ES          equ 0x48
TSS_CS          equ 0x4c
TSS_SS          equ 0x50
TSS_DS          equ 0x54
TSS_FS          equ 0x58
TSS_GS          equ 0x5c
; access byte type field: 32-bit TSS available (9) or busy (0xb)
TYPE_AVAIL      equ 0x89
TYPE_BUSY       equ 0x8b
TYPE16_AVAIL    equ 0x81
TYPE16_BUSY     equ 0x83
; 16-bit TSS field offsets
TSS16_IP        equ 0x0e
TSS16_FLAGS     equ 0x10
TSS16_AX        equ 0x12
TSS16_BX        equ 0x18
TSS16_SP        equ 0x1a
TSS16_ES        equ 0x22
TSS16_CS        equ 0x24
TSS16_SS        equ 0x26
TSS16_DS        equ 0x28
TSS16_SIZE      equ 0x2c
TASK16_STACK    equ 0x7000          ; below LOW_CODE: SP is a word
%define LOW16(x) (LOW_CODE + (x) - task16_start)   ; where the 16-bit task's code runs

main:
        call    enable_tss              ; TR = SEL_TSS32: the main task
        mov     dword [tss_task + TSS_EIP], task_entry
        mov     dword [tss_task + TSS_EFLAGS], FL_FIXED
        mov     dword [tss_task + TSS_EAX], 0x7a5c0001
        mov     dword [tss_task + TSS_ESP], TASK_STACK_TOP
        mov     dword [tss_task + TSS_CS], SEL_CODE32
        mov     eax, SEL_DATA
        mov     [tss_task + TSS_ES], eax
        mov     [tss_task + TSS_SS], eax
        mov     [tss_task + TSS_DS], eax
        mov     [tss_task + TSS_FS], eax
        mov     [tss_task + TSS_GS], eax
        mov     word [tss_task + 102], 104      ; no I/O bitmap
        mov     eax, SEL_TASK
        mov     ebx, tss_task
        mov     ecx, 103
        mov     dx, TYPE_AVAIL
        call    set_desc

        ; ---- JMP ----
        mov     ebx, 0x0b0b0b0b         ; must survive the round trip (saved in the TSS)
        jmp     SEL_TASK:0
.after_jmp:
        mov     [main_ebx_back], ebx
        mov     eax, cr0
        and     eax, CR0_TS
        mov     [main_ts], eax
        clts
        CHECK   "jmp: task got eax from its tss", dword [seen_eax], 0x7a5c0001
        CHECK   "jmp: task got esp from its tss", dword [seen_esp], TASK_STACK_TOP
        CHECK   "jmp: tr is the task", dword [seen_tr], SEL_TASK
        CHECK   "jmp: nt clear", dword [seen_nt], 0
        CHECK   "jmp: old tss saved eip after the jmp", dword [seen_main_eip], .after_jmp
        CHECK   "jmp: old tss saved ebx", dword [seen_main_ebx], 0x0b0b0b0b
        CHECK   "jmp: old tss available", dword [seen_main_type], TYPE_AVAIL
        CHECK   "jmp: new tss busy", dword [seen_task_type], TYPE_BUSY
        CHECK   "jmp back: ebx restored", dword [main_ebx_back], 0x0b0b0b0b
        CHECK   "jmp back: cr0.ts set", dword [main_ts], CR0_TS
        str     ax
        movzx   eax, ax
        CHECK   "jmp back: tr is main", eax, SEL_TSS32
        movzx   eax, byte [gdt + SEL_TASK + 5]
        CHECK   "jmp back: task tss available", eax, TYPE_AVAIL

        ; ---- CALL ----
        call    SEL_TASK:0
        clts
        CHECK   "call: nt set in the called task", dword [seen_nt], FL_NT
        CHECK   "call: link is the caller", dword [seen_link], SEL_TSS32
        CHECK   "call: caller tss stays busy", dword [seen_main_type], TYPE_BUSY
        str     ax
        movzx   eax, ax
        CHECK   "iret: back in the caller", eax, SEL_TSS32
        movzx   eax, byte [gdt + SEL_TASK + 5]
        CHECK   "iret: called tss available again", eax, TYPE_AVAIL
        pushfd
        pop     eax
        and     eax, FL_NT
        CHECK   "iret: caller's nt clear", eax, 0
        call    tss16_tests
        call    task_gate_tests
        call    sdm_requested
        test    eax, eax
        jz      .done
        call    t_flag_tests
.done:  ret

; ---- the T flag ----

; pic_init: the master 8259 edge-triggered with IRQ 0-7 on VEC_IRQ0.., the slave on
; 0x28.. (never unmasked), IRQ 2 the cascade, everything masked.
pic_init:
        mov     al, 0x11
        out     0x20, al
        out     0xa0, al
        mov     al, VEC_IRQ0
        out     0x21, al
        mov     al, 0x28
        out     0xa1, al
        mov     al, 0x04
        out     0x21, al
        mov     al, 0x02
        out     0xa1, al
        mov     al, 0x01
        out     0x21, al
        out     0xa1, al
        mov     al, 0xff
        out     0x21, al
        out     0xa1, al
        ret

; T_TASK_RESET how, skip: makes tss_t a fresh task at t_entry that returns by JMP (how = 0)
; or IRET (1) after adding `skip` to the EIP saved in the main TSS.
%macro T_TASK_RESET 2
        mov     dword [tss_t + TSS_EIP], t_entry
        mov     dword [tss_t + TSS_EFLAGS], FL_FIXED
        mov     dword [tss_t + TSS_ESP], T_STACK_TOP
        mov     dword [t_return_by_iret], %1
        mov     dword [t_skip], %2
%endmacro

; T_VERIFY "name", "dr6 name": the #DB was taken once, at t_entry, and the task saw
; DR6.BT (and no other DR6 condition).
%macro T_VERIFY 2
        VERIFY  %1, M_VEC | M_EIP | M_CS, 1, 0, t_entry, SEL_CODE32
        mov     eax, [seen_t_dr6]
        and     eax, 0xe00f                     ; BT, BS, BD, B3-B0
        CHECK   %2, eax, DR6_BT
%endmacro

t_flag_tests:
        mov     dword [tss_t + TSS_CS], SEL_CODE32
        mov     eax, SEL_DATA
        mov     [tss_t + TSS_ES], eax
        mov     [tss_t + TSS_SS], eax
        mov     [tss_t + TSS_DS], eax
        mov     [tss_t + TSS_FS], eax
        mov     [tss_t + TSS_GS], eax
        mov     word [tss_t + TSS_T], 1
        mov     word [tss_t + 102], 104
        mov     eax, SEL_TASK_T
        mov     ebx, tss_t
        mov     ecx, 103
        mov     dx, TYPE_AVAIL
        call    set_desc

        T_TASK_RESET 0, 0
        ARM_IRET
        jmp     SEL_TASK_T:0
        clts
        T_VERIFY "t flag, jmp: #db at the task's first instruction", "t flag, jmp: dr6.bt"

        T_TASK_RESET 1, 0
        ARM_IRET
        call    SEL_TASK_T:0
        clts
        T_VERIFY "t flag, call: #db at the task's first instruction", "t flag, call: dr6.bt"

        T_TASK_RESET 1, 0
        mov     eax, 0x30
        mov     ebx, SEL_TASK_T
        mov     cl, 0x85                        ; task gate, DPL 0
        call    set_gate32
        ARM_IRET
        int     0x30
        clts
        T_VERIFY "t flag, int n through a task gate: #db", \
                "t flag, int n through a task gate: dr6.bt"

        T_TASK_RESET 1, 2                       ; back past the UD2
        mov     eax, 6
        mov     ebx, SEL_TASK_T
        mov     cl, 0x85
        call    set_gate32
        ARM_IRET
        ud2
        clts
        T_VERIFY "t flag, exception through a task gate: #db", \
                "t flag, exception through a task gate: dr6.bt"
        mov     eax, 6
        mov     ebx, exc_stubs32 + 6 * STUB_SIZE
        mov     cl, 0x8e
        call    set_gate32
        mov     eax, 0x30
        mov     ebx, exc_stubs32 + 0x30 * STUB_SIZE
        mov     cl, 0x8e
        call    set_gate32

        ; An external interrupt through a task gate: IRQ 0 of a one-shot PIT count, through
        ; the 8259 remapped to VEC_IRQ0, taken in HLT; the task acknowledges it (EOI).
        T_TASK_RESET 1, 0
        mov     dword [t_eoi], 1
        mov     eax, VEC_IRQ0
        mov     ebx, SEL_TASK_T
        mov     cl, 0x85
        call    set_gate32
        call    pic_init
        mov     al, 0x30                        ; counter 0, low then high byte, mode 0
        out     0x43, al
        mov     al, 0
        out     0x40, al
        mov     al, 1                           ; 256 ticks: about 0.2 ms
        out     0x40, al
        mov     al, 0xfe                        ; unmask IRQ 0
        out     0x21, al
        ARM_IRET
        sti
        hlt
        cli
        mov     al, 0xff
        out     0x21, al
        mov     dword [t_eoi], 0
        clts
        T_VERIFY "t flag, external interrupt through a task gate: #db", \
                "t flag, external interrupt through a task gate: dr6.bt"
        mov     eax, VEC_IRQ0
        mov     ebx, exc_stubs32 + VEC_IRQ0 * STUB_SIZE
        mov     cl, 0xee
        call    set_gate32

        ; IRET back into this task with T set in its own TSS: the called task has T clear.
        T_TASK_RESET 1, 0
        mov     word [tss_t + TSS_T], 0
        mov     word [tss32 + TSS_T], 1
        ARM_IRET
        call    SEL_TASK_T:0
.iret_back:
        mov     word [tss32 + TSS_T], 0
        clts
        mov     eax, dr6
        mov     [seen_t_dr6], eax
        xor     eax, eax
        mov     dr6, eax
        VERIFY  "t flag, iret to the caller: #db after the call", M_VEC | M_EIP | M_CS, 1, 0, \
                .iret_back, SEL_CODE32
        mov     eax, [seen_t_dr6]
        and     eax, 0xe00f
        CHECK   "t flag, iret to the caller: dr6.bt", eax, DR6_BT
        ret

; The task with the T flag: notes DR6 (clearing it), then returns by JMP or, when called
; (NT set), by IRET, first moving the caller past `t_skip` bytes.
t_entry:
        mov     eax, dr6
        mov     [seen_t_dr6], eax
        xor     eax, eax
        mov     dr6, eax
        cmp     dword [t_eoi], 0
        je      .no_eoi
        mov     al, 0x20                        ; non-specific EOI to the master 8259
        out     0x20, al
.no_eoi:
        cmp     dword [t_return_by_iret], 0
        jne     .iret
        jmp     SEL_TSS32:0
.iret:  mov     eax, [t_skip]
        add     [tss32 + TSS_EIP], eax
        iretd

; ---- a fault through a task gate ----
task_gate_tests:
        mov     dword [tss_gp + TSS_EIP], gp_task
        mov     dword [tss_gp + TSS_EFLAGS], FL_FIXED
        mov     dword [tss_gp + TSS_ESP], GP_STACK_TOP
        mov     dword [tss_gp + TSS_CS], SEL_CODE32
        mov     eax, SEL_DATA
        mov     [tss_gp + TSS_ES], eax
        mov     [tss_gp + TSS_SS], eax
        mov     [tss_gp + TSS_DS], eax
        mov     word [tss_gp + 102], 104
        mov     eax, SEL_TASK_GP
        mov     ebx, tss_gp
        mov     ecx, 103
        mov     dx, TYPE_AVAIL
        call    set_desc
        mov     eax, 13
        mov     ebx, SEL_TASK_GP
        mov     cl, 0x85
        call    set_gate32
        mov     ax, BAD_SELECTOR
.fault: mov     es, ax                  ; #GP(BAD_SELECTOR) through the task gate
.resume:
        mov     eax, 13                 ; vector 13 back to its stub
        mov     ebx, exc_stubs32 + 13 * STUB_SIZE
        mov     cl, 0x8e
        call    set_gate32
        clts
        CHECK   "task gate: handler got the error code", dword [seen_gp_code], BAD_SELECTOR
        CHECK   "task gate: handler stack below its tss esp", dword [seen_gp_esp], GP_STACK_TOP - 4
        CHECK   "task gate: old tss saved the faulting eip", dword [seen_gp_eip], .fault
        CHECK   "task gate: link is the interrupted task", dword [seen_gp_link], SEL_TSS32
        CHECK   "task gate: nt set in the handler", dword [seen_gp_nt], FL_NT
        CHECK   "task gate: iret resumed the interrupted task", dword [gp_resumed], 1
        movzx   eax, byte [gdt + SEL_TASK_GP + 5]
        CHECK   "task gate: handler tss available again", eax, TYPE_AVAIL
        ret

; The #GP handler task: records what it sees, moves the interrupted task past the faulting
; MOV ES (2 bytes) and returns to it by IRET (NT is set: a task return).
gp_task:
        mov     [seen_gp_esp], esp
        pop     eax
        mov     [seen_gp_code], eax
        mov     eax, [tss32 + TSS_EIP]
        mov     [seen_gp_eip], eax
        add     dword [tss32 + TSS_EIP], task_gate_tests.resume - task_gate_tests.fault
        movzx   eax, word [tss_gp + TSS_LINK]
        mov     [seen_gp_link], eax
        pushfd
        pop     eax
        and     eax, FL_NT
        mov     [seen_gp_nt], eax
        mov     dword [gp_resumed], 1
        iretd

; ---- a 16-bit TSS ----
tss16_tests:
        mov     esi, task16_start       ; its code runs below 64 KiB: IP is a word
        mov     edi, LOW_CODE
        mov     ecx, task16_end - task16_start
        rep movsb
        mov     word [tss16 + TSS16_IP], LOW16(task16_entry)
        mov     word [tss16 + TSS16_FLAGS], FL_FIXED
        mov     word [tss16 + TSS16_AX], 0x1616
        mov     word [tss16 + TSS16_SP], TASK16_STACK
        mov     word [tss16 + TSS16_CS], SEL_CODE16
        mov     ax, SEL_DATA
        mov     [tss16 + TSS16_ES], ax
        mov     [tss16 + TSS16_SS], ax
        mov     [tss16 + TSS16_DS], ax
        mov     dword [tss16 + TSS16_SIZE], 0x5e5e5e5e  ; must survive: not part of the TSS
        mov     eax, SEL_TASK16
        mov     ebx, tss16
        mov     ecx, TSS16_SIZE - 1
        mov     dx, TYPE16_AVAIL
        call    set_desc
        mov     ax, SEL_DATA
        mov     fs, ax                  ; the 16-bit task must see FS null
        mov     gs, ax

        ; ---- JMP ----
        mov     ebx, 0x0c0c0c0c
        jmp     SEL_TASK16:0
.after_jmp:
        mov     [main_ebx_back], ebx
        clts
        CHECK   "16-bit jmp: task got ax from its tss", dword [seen16_ax], 0x1616
        CHECK   "16-bit jmp: task got sp from its tss", dword [seen16_sp], TASK16_STACK
        CHECK   "16-bit jmp: tr is the task", dword [seen16_tr], SEL_TASK16
        CHECK   "16-bit jmp: fs null", dword [seen16_fs], 0
        CHECK   "16-bit jmp: gs null", dword [seen16_gs], 0
        CHECK   "16-bit jmp: nt clear", dword [seen16_nt], 0
        CHECK   "16-bit jmp: new tss busy", dword [seen16_type], TYPE16_BUSY
        CHECK   "16-bit jmp: old tss available", dword [seen_main_type], TYPE_AVAIL
        CHECK   "16-bit jmp back: ebx restored", dword [main_ebx_back], 0x0c0c0c0c
        movzx   eax, word [tss16 + TSS16_IP]
        CHECK   "16-bit jmp back: ip saved", eax, LOW16(task16_resume)
        movzx   eax, word [tss16 + TSS16_BX]
        CHECK   "16-bit jmp back: bx saved", eax, 0x4242
        movzx   eax, word [tss16 + TSS16_CS]
        CHECK   "16-bit jmp back: cs saved", eax, SEL_CODE16
        movzx   eax, word [tss16 + TSS16_FLAGS]
        and     eax, ~(FL_CF | FL_ZF | 0xd4)    ; arithmetic flags left by the task
        CHECK   "16-bit jmp back: flags saved", eax, FL_FIXED
        CHECK   "16-bit jmp back: nothing past the tss", dword [tss16 + TSS16_SIZE], 0x5e5e5e5e
        movzx   eax, byte [gdt + SEL_TASK16 + 5]
        CHECK   "16-bit jmp back: task tss available", eax, TYPE16_AVAIL

        ; ---- CALL ----
        call    SEL_TASK16:0
        clts
        CHECK   "16-bit call: nt set in the called task", dword [seen16_nt], FL_NT
        CHECK   "16-bit call: link is the caller", dword [seen16_link], SEL_TSS32
        CHECK   "16-bit call: caller tss stays busy", dword [seen_main_type], TYPE_BUSY
        str     ax
        movzx   eax, ax
        CHECK   "16-bit iret: back in the caller", eax, SEL_TSS32
        movzx   eax, byte [gdt + SEL_TASK16 + 5]
        CHECK   "16-bit iret: called tss available again", eax, TYPE16_AVAIL
        movzx   eax, word [tss16 + TSS16_FLAGS]
        and     eax, FL_NT
        CHECK   "16-bit iret: nt clear in the saved flags", eax, 0
        ret

; The other task: records what it sees, returns by JMP the first time and by IRET the
; second (it resumes after its JMP when called).
task_entry:
        mov     [seen_eax], eax
        mov     [seen_esp], esp
        call    record
        mov     eax, [tss32 + TSS_EIP]
        mov     [seen_main_eip], eax
        mov     eax, [tss32 + TSS_EBX]
        mov     [seen_main_ebx], eax
        jmp     SEL_TSS32:0
        ; second entry, by CALL
        call    record
        movzx   eax, word [tss_task + TSS_LINK]
        mov     [seen_link], eax
        iretd

; record: TR, EFLAGS.NT and both TSS descriptors' types as this task sees them.
record:
        str     ax
        movzx   eax, ax
        mov     [seen_tr], eax
        pushfd
        pop     eax
        and     eax, FL_NT
        mov     [seen_nt], eax
        movzx   eax, byte [gdt + SEL_TSS32 + 5]
        mov     [seen_main_type], eax
        movzx   eax, byte [gdt + SEL_TASK + 5]
        mov     [seen_task_type], eax
        ret

; The 16-bit task, copied to LOW_CODE and run with CS = SEL_CODE16 (16-bit, base 0): it
; records what it sees, JMPs back the first time and IRETs the second (it resumes after its
; JMP when called). Data lives above 1 MiB, hence the 32-bit addresses.
        bits    16
task16_start:
task16_entry:
        mov     [dword seen16_ax], ax
        mov     [dword seen16_sp], sp
        call    task16_record
        mov     bx, 0x4242
        jmp     SEL_TSS32:0
task16_resume:
        call    task16_record
        mov     ax, [dword tss16]
        mov     [dword seen16_link], ax
        iret
task16_record:
        str     ax
        mov     [dword seen16_tr], ax
        mov     [dword seen16_fs], fs
        mov     [dword seen16_gs], gs
        pushf
        pop     ax
        and     ax, FL_NT
        mov     [dword seen16_nt], ax
        mov     al, [dword gdt + SEL_TASK16 + 5]
        mov     [dword seen16_type], al
        mov     al, [dword gdt + SEL_TSS32 + 5]
        mov     [dword seen_main_type], al
        ret
task16_end:
        bits    32

        align   4
seen_gp_code:   dd      0
seen_t_dr6:     dd      0
t_return_by_iret: dd    0
t_skip:         dd      0
t_eoi:          dd      0
seen_gp_esp:    dd      0
seen_gp_eip:    dd      0
seen_gp_link:   dd      0
seen_gp_nt:     dd      0
gp_resumed:     dd      0
seen16_ax:      dd      0
seen16_sp:      dd      0
seen16_tr:      dd      0
seen16_fs:      dd      0
seen16_gs:      dd      0
seen16_nt:      dd      0
seen16_link:    dd      0
seen16_type:    dd      0
seen_eax:       dd      0
seen_esp:       dd      0
seen_tr:        dd      0
seen_nt:        dd      0
seen_link:      dd      0
seen_main_eip:  dd      0
seen_main_ebx:  dd      0
seen_main_type: dd      0
seen_task_type: dd      0
main_ebx_back:  dd      0
main_ts:        dd      0
        align   16
tss_task:       times 104 db 0
        align   16
tss16:          times TSS16_SIZE + 4 db 0
        align   16
tss_gp:         times 104 db 0
        align   16
tss_t:          times 104 db 0

GUEST_END
