; pc: the PC board's interrupt sources and ACPI, checked from a guest, with the same output
; under QEMU (-M pc, SeaBIOS's tables) and crane86 (its firmware tables):
; - ACPI: the RSDP by the spec's scan, RSDT, FADT, DSDT and its \_S5; ACPI mode;
; - 8254 PIT counter 0 through the 8259 pair (IRQ 0 remapped to 0x20): masked requests
;   latched in IRR, delivery, ISR set in the handler and cleared by EOI, no second IRQ 0
;   before EOI;
; - the local APIC timer (PIC masked): one-shot (once, current count 0), periodic, ISR and
;   IRR without EOI, stopping it;
; - the MC146818 RTC: periodic interrupt on IRQ 8 through the cascade, register C
;   acknowledging it (no second interrupt without reading it), the time registers read
;   under the update-in-progress rule, and the seconds advancing by one per update-ended
;   interrupt;
; - the 16550 UART: THR-empty interrupt on IRQ 4, received data in loopback (MCR bit 4),
;   the loopback modem status; IRQ 0 before IRQ 4 when both are pending;
; - finally ACPI soft-off: SLP_TYP from \_S5 with SLP_EN written to PM1a_CNT (exit status 0
;   on both machines, after `DONE`). With a failed check the guest exits through
;   isa-debug-exit instead, as every system guest does.
;
; Timing facts are compared against thresholds within waits measured on the PM timer (see
; pc.inc), never printed.

%include "lib.inc"
%include "pc.inc"

VEC_IRQ0        equ 0x20
VEC_IRQ4        equ 0x24
VEC_IRQ8        equ 0x28
VEC_APIC_TIMER  equ 0x30
VEC_SPURIOUS    equ 0x3f

LAPIC           equ 0xfee00000
APIC_EOI        equ 0xb0
APIC_SVR        equ 0xf0
APIC_ISR1       equ 0x110               ; ISR bits 32-63: vector 0x30 is bit 16
APIC_IRR1       equ 0x210
APIC_LVT_TIMER  equ 0x320
APIC_LVT_LINT0  equ 0x350
APIC_LVT_LINT1  equ 0x360
APIC_TIMER_INIT equ 0x380
APIC_TIMER_CUR  equ 0x390
APIC_TIMER_DIV  equ 0x3e0
LVT_MASKED      equ 1 << 16
LVT_PERIODIC    equ 1 << 17
APIC_BIT_TIMER  equ 1 << (VEC_APIC_TIMER - 32)

COM1            equ 0x3f8

; The longest a wait for an interrupt may take before the guest calls it missing: generous,
; because under QEMU the timers fire from the main-loop thread, which a loaded host may
; keep off the CPU for a long while as the vCPU thread runs on (and reads the PM timer).
; Waits end as soon as what they wait for happened, so this costs nothing when it works.
LONG_WAIT       equ 2000000             ; microseconds
; How long "nothing more happens" is watched for.
QUIET_WAIT      equ 20000
CMOS_INDEX      equ 0x70
CMOS_DATA       equ 0x71

; SETGATE vector, handler: an interrupt gate (DPL 0) in the shared IDT.
%macro SETGATE 2
        mov     eax, %1
        mov     ebx, %2
        mov     cl, 0x8e
        call    set_gate32
%endmacro

; AT_LEAST "name", got, min: PASS if got >= min (unsigned), else FAIL showing got >= min as
; 0/1: a count that races a running timer is only ever compared against a threshold.
%macro AT_LEAST 3
        push    eax
        mov     eax, %2
        cmp     eax, %3
        setae   al
        movzx   eax, al
        CHECK   %1, eax, 1
        pop     eax
%endmacro

; CMOS_RD reg: AL = CMOS register reg (NMI left enabled).
%macro CMOS_RD 1
        mov     al, %1
        out     CMOS_INDEX, al
        in      al, CMOS_DATA
%endmacro
; CMOS_WR reg: CMOS register reg = AH.
%macro CMOS_WR 1
        mov     al, %1
        out     CMOS_INDEX, al
        mov     al, ah
        out     CMOS_DATA, al
%endmacro

main:
        call    acpi_find
        jnc     .tables
        ret                                 ; no PM timer to time anything with
.tables:
        call    acpi_enable
        SETGATE VEC_IRQ0, irq0_handler
        SETGATE VEC_IRQ4, irq4_handler
        SETGATE VEC_IRQ8, irq8_handler
        SETGATE VEC_APIC_TIMER, apic_timer_handler
        SETGATE VEC_SPURIOUS, spurious_handler
        ; The local APIC as an OS sets it up: software-enabled, LINT0 the 8259's virtual
        ; wire (ExtINT), LINT1 NMI, the timer masked.
        mov     dword [LAPIC + APIC_SVR], 0x100 | VEC_SPURIOUS
        mov     dword [LAPIC + APIC_LVT_LINT0], 0x700
        mov     dword [LAPIC + APIC_LVT_LINT1], 0x400
        mov     dword [LAPIC + APIC_LVT_TIMER], LVT_MASKED
        call    pic_init
        call    test_pit
        call    test_lapic_timer
        call    test_hlt_wakeup
        call    test_rtc_periodic
        call    test_rtc_time
        call    test_uart
        call    test_priority
        cmp     dword [fail_count], 0
        jne     .out
        PRINT   `DONE\n`
        call    acpi_poweroff
        FAIL    "acpi poweroff", "the machine still runs 100 ms after SLP_EN"
.out:   ret

; ---- 8254 PIT through the 8259 ----

test_pit:
        ; Counter 0, mode 2 (rate generator), binary, divisor 1193: 1 kHz.
        mov     al, 0x34
        out     0x43, al
        mov     al, 1193 & 0xff
        out     0x40, al
        mov     al, 1193 >> 8
        out     0x40, al
        mov     ebx, 0x01
        call    wait_irr
        CHECK   "pic: a masked IRQ 0 is latched in IRR", eax, 1
        mov     byte [pit_eoi], 1
        mov     al, 0xfe
        out     PIC1_DATA, al
        sti
        mov     esi, pit_count
        mov     edx, 5
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        AT_LEAST "pit: IRQ 0 interrupts keep coming (5 seen)", eax, 5
        CHECK   "pit: delivered on the remapped vector 0x20", dword [order_log], VEC_IRQ0
        CHECK   "pic: ISR bit 0 set in the IRQ 0 handler", dword [pit_isr], 1
        mov     ah, OCW3_READ_ISR
        call    pic_read
        CHECK   "pic: ISR clear after EOI", eax, 0
        ; Without EOI the in-service IRQ 0 blocks every later IRQ 0.
        mov     byte [pit_eoi], 0
        mov     dword [pit_count], 0
        sti
        mov     esi, pit_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        mov     ecx, QUIET_WAIT
        call    delay
        cli
        CHECK   "pic: without EOI, no second IRQ 0 for 20 ms", dword [pit_count], 1
        mov     ah, OCW3_READ_ISR
        call    pic_read
        CHECK   "pic: ISR bit 0 stays set without EOI", eax, 1
        mov     al, PIC_EOI
        out     PIC1_CMD, al
        mov     ah, OCW3_READ_ISR
        call    pic_read
        CHECK   "pic: EOI clears it", eax, 0
        mov     byte [pit_eoi], 1
        mov     dword [pit_count], 0
        sti
        mov     esi, pit_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        AT_LEAST "pic: IRQ 0 comes again after the EOI", eax, 1
        mov     al, 0xff
        out     PIC1_DATA, al
        ret

irq0_handler:
        push    eax
        inc     dword [pit_count]
        mov     ah, OCW3_READ_ISR
        call    pic_read
        mov     [pit_isr], eax
        mov     al, VEC_IRQ0
        call    log_vector
        cmp     byte [pit_eoi], 0
        je      .out
        mov     al, PIC_EOI
        out     PIC1_CMD, al
.out:   pop     eax
        iretd

; log_vector: appends AL to order_log (its first 8 entries).
log_vector:
        push    ebx
        mov     ebx, [order_len]
        cmp     ebx, 8
        jae     .full
        movzx   eax, al
        mov     [order_log + 4*ebx], eax
        inc     dword [order_len]
.full:  pop     ebx
        ret

; ---- local APIC timer ----

test_lapic_timer:
        mov     dword [LAPIC + APIC_TIMER_DIV], 0xb         ; divide by 1
        mov     dword [order_len], 0
        mov     byte [apic_eoi], 1
        ; One-shot, 1,000,000 ticks.
        mov     dword [LAPIC + APIC_LVT_TIMER], VEC_APIC_TIMER
        mov     dword [LAPIC + APIC_TIMER_INIT], 1000000
        sti
        mov     esi, apic_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        mov     ecx, QUIET_WAIT
        call    delay
        cli
        CHECK   "lapic: one-shot timer fires once", dword [apic_count], 1
        CHECK   "lapic: on its LVT vector", dword [order_log], VEC_APIC_TIMER
        CHECK   "lapic: ISR bit set in the handler", dword [apic_isr], APIC_BIT_TIMER
        CHECK   "lapic: one-shot current count is 0 after expiry", dword [LAPIC + APIC_TIMER_CUR], 0
        mov     eax, [LAPIC + APIC_ISR1]
        and     eax, APIC_BIT_TIMER
        CHECK   "lapic: ISR clear after EOI", eax, 0
        ; Periodic, 200,000 ticks.
        mov     dword [apic_count], 0
        mov     dword [LAPIC + APIC_LVT_TIMER], VEC_APIC_TIMER | LVT_PERIODIC
        mov     dword [LAPIC + APIC_TIMER_INIT], 200000
        sti
        mov     esi, apic_count
        mov     edx, 5
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        AT_LEAST "lapic: periodic timer interrupts keep coming (5 seen)", eax, 5
        ; Without EOI the in-service vector blocks the next timer interrupt, which waits
        ; in IRR.
        mov     byte [apic_eoi], 0
        mov     dword [apic_count], 0
        sti
        mov     esi, apic_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        mov     ecx, QUIET_WAIT
        call    delay
        cli
        CHECK   "lapic: without EOI, no second timer interrupt for 20 ms", dword [apic_count], 1
        mov     esi, LAPIC + APIC_IRR1
        mov     ebx, APIC_BIT_TIMER
        call    wait_bits
        CHECK   "lapic: the next one waits in IRR", eax, APIC_BIT_TIMER
        mov     byte [apic_eoi], 1
        mov     dword [LAPIC + APIC_EOI], 0
        sti
        mov     esi, apic_count
        mov     edx, 2
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        AT_LEAST "lapic: EOI lets it in", eax, 2
        ; Initial count 0 stops the timer: no interrupt after the ones already accepted.
        mov     dword [LAPIC + APIC_TIMER_INIT], 0
        sti
        mov     ecx, 2000
        call    delay
        mov     ebx, [apic_count]
        mov     ecx, QUIET_WAIT
        call    delay
        cli
        sub     ebx, [apic_count]
        CHECK   "lapic: initial count 0 stops the periodic timer", ebx, 0
        mov     dword [LAPIC + APIC_LVT_TIMER], LVT_MASKED
        ret

apic_timer_handler:
        push    eax
        inc     dword [apic_count]
        mov     eax, [LAPIC + APIC_ISR1]
        and     eax, APIC_BIT_TIMER
        mov     [apic_isr], eax
        mov     al, VEC_APIC_TIMER
        call    log_vector
        cmp     byte [apic_eoi], 0
        je      .out
        mov     dword [LAPIC + APIC_EOI], 0
.out:   pop     eax
        iretd

spurious_handler:
        inc     dword [spurious_count]
        iretd

; HLT resumes only for an interrupt (or NMI, SMI, INIT, reset: SDM Vol. 2 "HLT"), not when
; a device whose interrupt is masked reaches a deadline: with the PIT running at 1 kHz
; behind a masked IRQ 0, a HLT waits for the APIC timer 5 ms later. (crane86 used to wake
; at the PIT's deadline.)
test_hlt_wakeup:
        mov     dword [apic_count], 0
        mov     byte [apic_eoi], 1
        mov     dword [LAPIC + APIC_LVT_TIMER], VEC_APIC_TIMER
        mov     dword [LAPIC + APIC_TIMER_INIT], 5000000
        sti
        hlt
        cli
        CHECK   "hlt: a masked device's deadline does not end it, the APIC timer's interrupt does", dword [apic_count], 1
        sti                                 ; (if HLT ended early, let the interrupt in)
        mov     esi, apic_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        mov     dword [LAPIC + APIC_LVT_TIMER], LVT_MASKED
        ret


; ---- MC146818 RTC ----

test_rtc_periodic:
        mov     dword [order_len], 0
        mov     byte [rtc_ack], 1
        mov     ah, 0x26                    ; 32.768 kHz time base, 1024 Hz periodic rate
        CMOS_WR 0x0a
        CMOS_RD 0x0c                        ; clear any pending flag
        CMOS_RD 0x0b
        or      al, 0x40                    ; PIE
        mov     ah, al
        CMOS_WR 0x0b
        mov     al, 0xfb                    ; cascade (IRQ 2) open
        out     PIC1_DATA, al
        mov     al, 0xfe                    ; IRQ 8 open
        out     PIC2_DATA, al
        sti
        mov     esi, rtc_count
        mov     edx, 5
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        AT_LEAST "rtc: periodic interrupts keep coming (5 seen)", eax, 5
        CHECK   "rtc: IRQ 8 through the cascade on vector 0x28", dword [order_log], VEC_IRQ8
        mov     eax, [rtc_regc]
        and     eax, 0xc0
        CHECK   "rtc: register C reads IRQF and PF in the handler", eax, 0xc0
        ; Not reading register C leaves IRQ 8 asserted: no new edge, no new interrupt.
        mov     byte [rtc_ack], 0
        mov     dword [rtc_count], 0
        sti
        mov     esi, rtc_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        mov     ecx, QUIET_WAIT
        call    delay
        cli
        CHECK   "rtc: without reading register C, no second interrupt for 20 ms", dword [rtc_count], 1
        mov     byte [rtc_ack], 1
        mov     dword [rtc_count], 0
        CMOS_RD 0x0c
        sti
        mov     esi, rtc_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        AT_LEAST "rtc: reading register C lets the next one in", eax, 1
        CMOS_RD 0x0b
        and     al, ~0x40
        mov     ah, al
        CMOS_WR 0x0b
        CMOS_RD 0x0c
        ret

irq8_handler:
        push    eax
        inc     dword [rtc_count]
        cmp     byte [rtc_ack], 0
        je      .eoi
        CMOS_RD 0x0c
        movzx   eax, al
        mov     [rtc_regc], eax
.eoi:   mov     al, VEC_IRQ8
        call    log_vector
        mov     al, PIC_EOI
        out     PIC2_CMD, al
        out     PIC1_CMD, al
        pop     eax
        iretd

; rtc_read_seconds: EAX = the seconds register, read when register A's update-in-progress
; bit is clear (the time registers are then stable for at least 244 us).
rtc_read_seconds:
.uip:   CMOS_RD 0x0a
        test    al, 0x80
        jnz     .uip
        CMOS_RD 0x00
        movzx   eax, al
        ret

; is_bcd: CF clear if AL is a BCD number below AH (BCD).
is_bcd:
        push    eax
        mov     dl, al
        and     dl, 0x0f
        cmp     dl, 9
        ja      .bad
        cmp     al, ah
        jae     .bad
        pop     eax
        clc
        ret
.bad:   pop     eax
        stc
        ret

test_rtc_time:
        CMOS_RD 0x0b
        and     eax, 0x06
        CHECK   "rtc: BCD, 24-hour mode as the BIOS leaves it", eax, 0x02
        ; A consistent read: every time register valid BCD after waiting for UIP clear,
        ; and the same values twice in a row.
        xor     ebx, ebx                    ; invalid fields
.again: call    rtc_read_seconds
        mov     [rtc_time], al
        CMOS_RD 0x02
        mov     [rtc_time + 1], al
        CMOS_RD 0x04
        mov     [rtc_time + 2], al
        CMOS_RD 0x07
        mov     [rtc_time + 3], al
        CMOS_RD 0x08
        mov     [rtc_time + 4], al
        CMOS_RD 0x09
        mov     [rtc_time + 5], al
        call    rtc_read_seconds
        cmp     al, [rtc_time]
        jne     .again
        mov     esi, rtc_limits
        xor     ecx, ecx
.field: mov     al, [rtc_time + ecx]
        mov     ah, [esi + ecx]
        call    is_bcd
        adc     ebx, 0
        inc     ecx
        cmp     ecx, 6
        jb      .field
        CHECK   "rtc: time registers hold valid BCD", ebx, 0
        ; The update-ended interrupt: once a second, after which the seconds went up by one.
        mov     dword [rtc_count], 0
        CMOS_RD 0x0c
        CMOS_RD 0x0b
        or      al, 0x10                    ; UIE
        mov     ah, al
        CMOS_WR 0x0b
        ; A second is long to spin through (a billion instructions under crane86), so the
        ; waits halt (at most 1.5 s each), with the local APIC timer as a 10 ms watchdog.
        mov     byte [apic_eoi], 1
        mov     dword [LAPIC + APIC_LVT_TIMER], VEC_APIC_TIMER | LVT_PERIODIC
        mov     dword [LAPIC + APIC_TIMER_INIT], 10000000
        mov     esi, rtc_count
        mov     edx, 1
        mov     ecx, 2 * LONG_WAIT
        call    halt_for
        call    rtc_read_seconds
        mov     ebx, eax
        mov     esi, rtc_count
        mov     edx, 2
        mov     ecx, 2 * LONG_WAIT
        call    halt_for
        mov     dword [LAPIC + APIC_TIMER_INIT], 0
        mov     dword [LAPIC + APIC_LVT_TIMER], LVT_MASKED
        CHECK   "rtc: an update-ended interrupt each second", eax, 2
        call    rtc_read_seconds
        ; BCD increment of EBX with 59 -> 00.
        mov     al, bl
        add     al, 1
        daa
        cmp     al, 0x60
        jne     .inc
        xor     al, al
.inc:   movzx   ebx, al
        CHECK   "rtc: the seconds advance by one per update", eax, ebx
        CMOS_RD 0x0b
        and     al, ~0x10
        mov     ah, al
        CMOS_WR 0x0b
        CMOS_RD 0x0c
        mov     al, 0xff
        out     PIC1_DATA, al
        out     PIC2_DATA, al
        ret

; halt_for: halts with interrupts on until the dword at ESI reaches EDX or ECX microseconds
; pass on the PM timer (checked at each wakeup); returns with interrupts off and EAX = the
; dword. Some timer must wake the CPU (the guest's watchdog): nothing else bounds a HLT.
halt_for:
        push    ebx
        push    ecx
        push    edx
        push    edi
        mov     eax, ecx
        shl     ecx, 2
        shr     eax, 1
        sub     ecx, eax                    ; 3.5 PM timer ticks per microsecond
        mov     edi, edx
        mov     edx, [pm_tmr]
        in      eax, dx
        and     eax, 0xffffff
        mov     ebx, eax
.loop:  cmp     [esi], edi
        jae     .done
        in      eax, dx
        sub     eax, ebx
        and     eax, 0xffffff
        cmp     eax, ecx
        jae     .done
        sti
        hlt
        cli
        jmp     .loop
.done:  mov     eax, [esi]
        pop     edi
        pop     edx
        pop     ecx
        pop     ebx
        ret

; ---- 16550 UART ----

test_uart:
        ; FIFOs on and cleared, 8N1, DTR, RTS and OUT2 (the PC's interrupt gate).
        mov     dx, COM1 + 2
        mov     al, 0x07
        out     dx, al
        mov     dx, COM1 + 3
        mov     al, 0x03
        out     dx, al
        mov     dx, COM1 + 4
        mov     al, 0x0b
        out     dx, al
        mov     dx, COM1 + 2
        in      al, dx
        mov     dx, COM1 + 5
        in      al, dx
        mov     dx, COM1
        in      al, dx
        mov     dword [order_len], 0
        mov     dword [uart_count], 0
        mov     al, 0xef                    ; IRQ 4 open
        out     PIC1_DATA, al
        ; THR empty: enabling its interrupt with the transmitter idle raises it at once.
        sti
        mov     dx, COM1 + 1
        mov     al, 0x02
        out     dx, al
        mov     esi, uart_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        mov     ecx, 10000
        call    delay
        cli
        mov     dx, COM1 + 1
        xor     al, al
        out     dx, al
        mov     eax, [uart_iir]
        mov     [uart_thre_iir], eax
        CHECK   "uart: one THR-empty interrupt when enabled", dword [uart_count], 1
        CHECK   "uart: on IRQ 4, vector 0x24", dword [order_log], VEC_IRQ4
        CHECK   "uart: IIR says THR empty, FIFOs on", dword [uart_thre_iir], 0xc2
        ; Loopback: what is sent is received; the modem inputs follow the outputs.
        mov     dx, COM1 + 4
        mov     al, 0x1b                    ; LOOP | OUT2 | RTS | DTR
        out     dx, al
        mov     dx, COM1 + 6
        in      al, dx
        and     eax, 0xf0
        mov     [uart_msr], eax
        mov     dword [uart_count], 0
        mov     dword [uart_rx], 0
        mov     dx, COM1 + 1
        mov     al, 0x01                    ; received data available
        out     dx, al
        sti
        mov     dx, COM1
        mov     al, 0x5a
        out     dx, al
        mov     esi, uart_count
        mov     edx, 1
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        mov     dx, COM1 + 5
        in      al, dx
        and     eax, 1
        mov     [uart_lsr_dr], eax
        mov     dx, COM1 + 1
        xor     al, al
        out     dx, al
        mov     dx, COM1 + 4
        mov     al, 0x0b
        out     dx, al
        mov     al, 0xff
        out     PIC1_DATA, al
        CHECK   "uart: loopback MSR: DCD = OUT2, DSR = DTR, CTS = RTS", dword [uart_msr], 0xb0
        CHECK   "uart: loopback byte raises one received-data interrupt", dword [uart_count], 1
        CHECK   "uart: IIR says received data, FIFOs on", dword [uart_iir], 0xc4
        CHECK   "uart: the handler read the byte sent", dword [uart_rx], 0x5a
        CHECK   "uart: LSR data ready clear after reading it", dword [uart_lsr_dr], 0
        ret

irq4_handler:
        push    eax
        push    edx
        inc     dword [uart_count]
        mov     dx, COM1 + 2
        in      al, dx
        movzx   eax, al
        mov     [uart_iir], eax
        and     al, 0x0f
        cmp     al, 0x04
        jne     .log
        mov     dx, COM1
        in      al, dx
        movzx   eax, al
        mov     [uart_rx], eax
.log:   mov     al, VEC_IRQ4
        call    log_vector
        mov     al, PIC_EOI
        out     PIC1_CMD, al
        pop     edx
        pop     eax
        iretd

; wait_irr: waits until the master's IRR has every bit of EBX, or LONG_WAIT passes;
; EAX = IRR & EBX.
wait_irr:
        push    ecx
        push    edx
        push    esi
        mov     edx, [pm_tmr]
        in      eax, dx
        and     eax, 0xffffff
        mov     esi, eax
.poll:  mov     ah, OCW3_READ_IRR
        call    pic_read
        and     eax, ebx
        cmp     eax, ebx
        je      .out
        in      eax, dx
        sub     eax, esi
        and     eax, 0xffffff
        cmp     eax, LONG_WAIT * 7 / 2
        jb      .poll
        mov     ah, OCW3_READ_IRR
        call    pic_read
        and     eax, ebx
.out:   pop     esi
        pop     edx
        pop     ecx
        ret

; wait_bits: waits until the dword at ESI has every bit of EBX, or LONG_WAIT passes;
; EAX = [ESI] & EBX.
wait_bits:
        push    ecx
        push    edx
        push    edi
        mov     edx, [pm_tmr]
        in      eax, dx
        and     eax, 0xffffff
        mov     edi, eax
.poll:  mov     eax, [esi]
        and     eax, ebx
        cmp     eax, ebx
        je      .out
        in      eax, dx
        sub     eax, edi
        and     eax, 0xffffff
        cmp     eax, LONG_WAIT * 7 / 2
        jb      .poll
        mov     eax, [esi]
        and     eax, ebx
.out:   pop     edi
        pop     edx
        pop     ecx
        ret

; ---- priority ----

; IRQ 0 and IRQ 4 both requested while interrupts are off: the 8259 delivers IRQ 0 first.
test_priority:
        mov     dword [order_len], 0
        mov     al, 0xee                    ; IRQ 0 and IRQ 4 open, IF still clear
        out     PIC1_DATA, al
        mov     dx, COM1 + 1
        mov     al, 0x02                    ; THR empty: IRQ 4 requested at once
        out     dx, al
        mov     ebx, 0x11                   ; the PIT (still at 1 kHz) requests IRQ 0
        call    wait_irr
        CHECK   "pic: IRQ 0 and IRQ 4 both in IRR", eax, 0x11
        sti
        mov     esi, order_len
        mov     edx, 2
        mov     ecx, LONG_WAIT
        call    wait_for
        cli
        mov     dx, COM1 + 1
        xor     al, al
        out     dx, al
        mov     al, 0xff
        out     PIC1_DATA, al
        CHECK   "pic: IRQ 0 delivered first", dword [order_log], VEC_IRQ0
        CHECK   "pic: then IRQ 4", dword [order_log + 4], VEC_IRQ4
        ret

        align   4
pit_count:      dd 0
pit_isr:        dd 0
pit_eoi:        db 0
apic_eoi:       db 0
rtc_ack:        db 0
        align   4
apic_count:     dd 0
apic_isr:       dd 0
spurious_count: dd 0
rtc_count:      dd 0
rtc_regc:       dd 0
rtc_time:       times 8 db 0
rtc_limits:     db 0x60, 0x60, 0x24, 0x32, 0x13, 0xa0   ; sec, min, hour, day, month, year
        align   4
uart_count:     dd 0
uart_iir:       dd 0
uart_thre_iir:  dd 0
uart_msr:       dd 0
uart_rx:        dd 0
uart_lsr_dr:    dd 0
order_len:      dd 0
order_log:      times 8 dd 0

GUEST_END
