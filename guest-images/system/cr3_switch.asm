; cr3_switch: two address spaces under 32-bit paging, switched by MOV CR3. Both share the
; identity-mapped first 16 MiB (the same page tables) and the page at SHARED_VA (the same
; frame); PRIVATE_VA maps to a different frame in each. Writes through one space are seen
; through the other only for shared pages; switching back finds the private data intact;
; a page present in one space and not mapped in the other faults after the switch (the
; SDM requires MOV CR3 to invalidate every non-global TLB entry), and so does a change to
; the other space's page tables made while it was not current. Code on a private page, a
; block crossing into one, and returns to one run the code of the space current at the time.

%include "lib.inc"

PD_A            equ SCRATCH
PD_B            equ SCRATCH + 0x1000
PT_A            equ SCRATCH + 0x2000
PT_B            equ SCRATCH + 0x3000
PRIVATE_VA      equ 0x40000000
SHARED_VA       equ 0x40001000
ONLY_A_VA       equ 0x40002000          ; mapped in space A only
FRAME_A         equ SCRATCH + 0x10000   ; private frame of A
FRAME_B         equ SCRATCH + 0x11000   ; private frame of B
FRAME_SHARED    equ SCRATCH + 0x12000
FRAME_C         equ SCRATCH + 0x13000   ; CROSS_VA's second page in space a
FRAME_D         equ SCRATCH + 0x14000   ; ... in space b
CROSS_VA        equ ONLY_A_VA + 0xffe   ; code crossing into the page after ONLY_A_VA
CODE_OFF        equ 0x800               ; code on the private page
CALL_OFF        equ 0x900               ; a call from the private page, and its return
CALLS           equ 300

main:
        mov     edi, PD_A
        call    pd32_identity
        mov     edi, PD_B
        call    pd32_identity
        mov     edi, PT_A
        xor     eax, eax
        mov     ecx, 2 * 1024
        rep stosd
        mov     dword [PD_A + 4 * (PRIVATE_VA >> 22)], PT_A | PTE_P | PTE_W
        mov     dword [PD_B + 4 * (PRIVATE_VA >> 22)], PT_B | PTE_P | PTE_W
        mov     dword [PT_A + 0], FRAME_A | PTE_P | PTE_W
        mov     dword [PT_B + 0], FRAME_B | PTE_P | PTE_W
        mov     dword [PT_A + 4], FRAME_SHARED | PTE_P | PTE_W
        mov     dword [PT_B + 4], FRAME_SHARED | PTE_P | PTE_W
        mov     dword [PT_A + 8], FRAME_A | PTE_P | PTE_W
        mov     dword [FRAME_A], 0xaaaa0000
        mov     dword [FRAME_B], 0xbbbb0000
        mov     dword [FRAME_SHARED], 0x55550000

        mov     eax, PD_A
        call    paging32_on
        CHECK   "space a: private page", dword [PRIVATE_VA], 0xaaaa0000
        CHECK   "space a: shared page", dword [SHARED_VA], 0x55550000
        mov     dword [PRIVATE_VA], 0xaaaa0001
        mov     dword [SHARED_VA], 0x55550001
        mov     eax, [ONLY_A_VA]        ; now cached, maybe

        mov     eax, PD_B
        mov     cr3, eax
        CHECK   "space b: private page", dword [PRIVATE_VA], 0xbbbb0000
        CHECK   "space b: sees a's shared write", dword [SHARED_VA], 0x55550001
        mov     dword [PRIVATE_VA], 0xbbbb0002
        mov     dword [SHARED_VA], 0x55550002
        ARM_RESUME .np_done
        mov     eax, [ONLY_A_VA]
.np_done:
        VERIFY  "space b: a-only page is not mapped", M_VEC | M_ERR, 14, 0
        mov     eax, cr2
        CHECK   "space b: cr2", eax, ONLY_A_VA

        mov     eax, PD_A
        mov     cr3, eax
        CHECK   "space a again: private page kept", dword [PRIVATE_VA], 0xaaaa0001
        CHECK   "space a again: sees b's shared write", dword [SHARED_VA], 0x55550002
        CHECK   "space a again: a-only page", dword [ONLY_A_VA], 0xaaaa0001

        ; Code at one linear address on the private page, different in each space, called
        ; from shared code often enough to be compiled and chained: every call must run the
        ; code of the space (and the mapping) current at the call.
        mov     dword [PRIVATE_VA + CODE_OFF], 0x00000ab8       ; mov eax, 0xa; ret
        mov     byte [PRIVATE_VA + CODE_OFF + 5], 0xc3
        mov     eax, PD_B
        mov     cr3, eax
        mov     dword [PRIVATE_VA + CODE_OFF], 0x00000bb8       ; mov eax, 0xb; ret
        mov     byte [PRIVATE_VA + CODE_OFF + 5], 0xc3
        xor     esi, esi
        xor     edi, edi
        mov     ecx, CALLS
        mov     ebx, call_private
.switching:
        call    in_both_spaces
        dec     ecx
        jnz     .switching
        CHECK   "code on a private page, space a", esi, CALLS * 0xa
        CHECK   "code on a private page, space b", edi, CALLS * 0xb
        ; The same through one space whose page table entry alternates between the two
        ; frames, each change followed by INVLPG.
        mov     eax, PD_A
        mov     cr3, eax
        xor     esi, esi
        mov     ecx, CALLS
.remapping:
        mov     dword [PT_A + 0], FRAME_B | PTE_P | PTE_W
        invlpg  [PRIVATE_VA]
        call    call_private
        add     esi, eax
        mov     dword [PT_A + 0], FRAME_A | PTE_P | PTE_W
        invlpg  [PRIVATE_VA]
        call    call_private
        shl     eax, 8
        add     esi, eax
        dec     ecx
        jnz     .remapping
        CHECK   "code on a remapped page", esi, CALLS * (0xb + 0xa00)

        ; Space b's page tables change while space a runs: the switch back to b must see
        ; the change (a MOV to CR3 invalidates every non-global translation), even though b's
        ; old translation was in use just before.
        mov     eax, PD_B
        mov     cr3, eax
        mov     eax, [PRIVATE_VA]
        mov     eax, PD_A
        mov     cr3, eax
        mov     dword [PT_B + 0], FRAME_SHARED | PTE_P | PTE_W
        mov     eax, PD_B
        mov     cr3, eax
        CHECK   "space b: its pte changed from a", dword [PRIVATE_VA], 0x55550002
        mov     eax, PD_A
        mov     cr3, eax
        mov     dword [PD_B + 4 * (PRIVATE_VA >> 22)], PT_A | PTE_P | PTE_W
        mov     eax, PD_B
        mov     cr3, eax
        CHECK   "space b: its pde changed from a", dword [PRIVATE_VA], 0xaaaa0001
        mov     eax, PD_A
        mov     cr3, eax
        mov     dword [PD_B + 4 * (PRIVATE_VA >> 22)], PT_B | PTE_P | PTE_W
        mov     dword [PT_B + 0], FRAME_B | PTE_P | PTE_W
        mov     eax, PD_B
        mov     cr3, eax
        CHECK   "space b: both restored", dword [PRIVATE_VA], 0xbbbb0002
        ; Space b clears the accessed bit of its own pte, then leaves and comes back: the
        ; first access after the switch walks and sets it again.
        and     dword [PT_B + 0], ~PTE_A
        mov     eax, PD_A
        mov     cr3, eax
        mov     eax, PD_B
        mov     cr3, eax
        mov     eax, [PRIVATE_VA]
        mov     eax, [PT_B + 0]
        and     eax, PTE_A
        CHECK   "space b: accessed bit set again", eax, PTE_A
        mov     eax, PD_A
        mov     cr3, eax

        ; Returns across a CR3 switch: code on the private page calls a shared routine that
        ; loads CR3 (edx) and runs the private page's code there (so the TLB holds the page's
        ; mapping in the new space), then returns to the private page. The return address is
        ; one linear address; the code there is the frame of the space current at the RET,
        ; whichever space the CALL ran in (a return prediction is only good while the page
        ; maps where it did when the code after the CALL was translated).
        mov     eax, PD_A
        mov     cr3, eax
        mov     dword [PRIVATE_VA + CALL_OFF], 0x0ab8d3ff         ; call ebx; mov eax, 0xa
        mov     dword [PRIVATE_VA + CALL_OFF + 4], 0xc3000000     ; ...; ret
        mov     eax, PD_B
        mov     cr3, eax
        mov     dword [PRIVATE_VA + CALL_OFF], 0x0bb8d3ff         ; call ebx; mov eax, 0xb
        mov     dword [PRIVATE_VA + CALL_OFF + 4], 0xc3000000     ; ...; ret
        mov     ebx, switch_space
        xor     esi, esi
        xor     edi, edi
        mov     ecx, CALLS
.returning:
        mov     eax, PD_A
        mov     cr3, eax
        mov     edx, PD_A
        call    PRIVATE_VA + CALL_OFF
        add     esi, eax
        mov     eax, PD_A
        mov     cr3, eax
        mov     edx, PD_B
        call    PRIVATE_VA + CALL_OFF
        add     edi, eax
        dec     ecx
        jnz     .returning
        CHECK   "return to a private page, same space", esi, CALLS * 0xa
        CHECK   "return to a private page, other space", edi, CALLS * 0xb

        ; A block that crosses from a page both spaces map to one frame into a page each
        ; maps to its own: `mov eax, imm32; ret` whose immediate's upper bytes and RET lie
        ; on the second page. The block's first page (its key) is the same in both spaces,
        ; so every call must find which frame the second page maps to now, also when data
        ; reads have just put both pages' translations in the TLB (a chained call is then
        ; taken without the run loop).
        mov     dword [PT_B + 8], FRAME_A | PTE_P | PTE_W
        mov     dword [PT_A + 12], FRAME_C | PTE_P | PTE_W
        mov     dword [PT_B + 12], FRAME_D | PTE_P | PTE_W
        mov     word [FRAME_A + 0xffe], 0x00b8                   ; mov eax, 0x...00
        mov     dword [FRAME_C], 0xc300000a                      ; 0xa00; ret
        mov     dword [FRAME_D], 0xc300000b                      ; 0xb00; ret
        xor     esi, esi
        xor     edi, edi
        mov     ecx, CALLS
        mov     ebx, call_crossing
.crossing:
        call    in_both_spaces
        dec     ecx
        jnz     .crossing
        CHECK   "a block crossing into a private page, space a", esi, CALLS * 0xa00
        CHECK   "a block crossing into a private page, space b", edi, CALLS * 0xb00
        mov     eax, PD_A
        mov     cr3, eax

        call    paging32_off
        CHECK   "frames: a", dword [FRAME_A], 0xaaaa0001
        CHECK   "frames: b", dword [FRAME_B], 0xbbbb0002
        CHECK   "frames: shared", dword [FRAME_SHARED], 0x55550002
        ret

; Calls the routine at ebx in space a, adding its eax to esi, then in space b, adding its
; eax to edi.
in_both_spaces:
        mov     eax, PD_A
        mov     cr3, eax
        call    ebx
        add     esi, eax
        mov     eax, PD_B
        mov     cr3, eax
        call    ebx
        add     edi, eax
        ret

; One call site for the private page's code in every space and mapping, with the page
; already in the TLB when the call is made (a compiled call to another page may only be
; chained while the TLB maps that page where it did when it was linked).
call_private:
        mov     eax, [PRIVATE_VA]
        call    PRIVATE_VA + CODE_OFF
        ret

; One call site for the crossing block, with both its pages in the TLB.
call_crossing:
        mov     eax, [ONLY_A_VA]
        mov     eax, [ONLY_A_VA + 0x1000]
        call    CROSS_VA
        ret

; Called from the private page: switch to the space in edx and run the private page's code
; there, then return to the private page (in that space).
switch_space:
        mov     cr3, edx
        call    PRIVATE_VA + CODE_OFF
        ret

GUEST_END
