; taskswitch: hardware task switches between two 32-bit TSSs.
; - JMP to a TSS selector: the current state is saved in the old TSS (EIP after the JMP,
;   general registers), the new task starts with the registers of its TSS, TR is the new
;   selector, EFLAGS.NT is clear, the old TSS becomes available and the new one busy, and
;   CR0.TS is set; a JMP back resumes the first task after its JMP;
; - CALL to a TSS selector: the new task runs with NT set and the caller's selector in its
;   TSS link field, the caller's TSS stays busy; IRET in the called task returns to the
;   caller (through the link, because NT is set) and frees the called TSS.

%include "lib.inc"

SEL_TASK        equ SEL_FREE
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

        align   4
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

GUEST_END
