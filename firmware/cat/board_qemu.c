/* board_qemu.c: the cat unit's board as QEMU's `virt` machine gives it, so that the unit's own
 * rv32 image (unit_main.c, cat_unit.c, the engine, the framing; -Os, rv32imafc, as `make rv32`
 * builds them) runs under `qemu-system-riscv32 -machine virt -bios none` with its serial line on
 * a host pseudo-terminal: `make qemu-cat-unit`, `qcat sim cat --emulate` (firmware/emulator.py).
 * These are the strong definitions of unit_main.c's weak board functions; nothing else changes.
 *
 *   serial line  the NS16550A at 0x10000000 (QEMU: -serial pty): bytes out when LSR says the
 *                holding register is empty; bytes in through the UART's receive interrupt into
 *                a RX_RING-byte ring, drained by the main loop, so that frames arriving while
 *                the engine computes are held as a USB CDC endpoint holds them on the unit
 *                (polled, the 16-byte FIFO let a second frame arrive only after the job it
 *                should have been refused during had finished). A controller
 *                attached to the pty that stops reading fills the pty and QEMU stops taking
 *                bytes: after SERIAL_STALL_MS of that, frames are dropped whole (as a USB CDC
 *                device drops packets nobody collects) until the line moves again.
 *   clock        the CLINT's mtime (10 MHz on virt), in milliseconds.
 *   waiting      WFI until the CLINT's timer or a received byte; the trap handler (`trap`)
 *                takes the UART's interrupt (through the PLIC) and disarms the timer. QEMU's host
 *                thread sleeps too.
 *   SD card      the weight image WEIGHTS.QCW in QEMU's working directory through semihosting
 *                file I/O (block 2048 of the card = byte 0 of the file; past its end reads zeros).
 *   card files   RESERVE.QCR and JOURNAL.QCJ there too, when present (a card folder): offline
 *                work as on the unit; a write is on the host file when SYS_WRITE returns.
 *   identity     from the semihosting command line: serial=HEX weights=HEX clips=HEX (the
 *                launcher hex-encodes them so no byte can split the line).
 *   LCD, DAC     nothing to show or play: the LCD ignores images and a verdict is spoken in no
 *                time (as `qcat sim cat --timing fast`).
 */
#include <stdint.h>
#include <string.h>

#include <semihost.h>

#include "board.h"
#include "cat_unit.h"


/* virt's memory map (QEMU hw/riscv/virt.c). */
#define UART_BASE 0x10000000u
#define UART_IRQ 10u
#define CLINT_MTIMECMP 0x02004000u  /* hart 0 */
#define CLINT_MTIME 0x0200BFF8u
#define MTIME_PER_MS 10000u         /* 10 MHz */
#define PLIC_BASE 0x0C000000u
#define PLIC_ENABLE (PLIC_BASE + 0x2000u)      /* context 0: hart 0, M mode */
#define PLIC_THRESHOLD (PLIC_BASE + 0x200000u)
#define PLIC_CLAIM (PLIC_BASE + 0x200004u)

/* NS16550A registers (reg-shift 0). */
enum { UART_RBR_THR = 0, UART_IER = 1, UART_FCR = 2, UART_LCR = 3, UART_MCR = 4, UART_LSR = 5 };
#define LSR_DATA_READY 0x01u
#define LSR_THR_EMPTY 0x20u
#define IER_RX_AVAILABLE 0x01u
#define FCR_FIFO_CLEAR 0x07u  /* enable, clear both FIFOs, receive trigger at 1 byte */

#define MIE_MTIE (1u << 7)
#define MIE_MEIE (1u << 11)

/* The longest the UART may keep a byte waiting before the line counts as stalled. */
#define SERIAL_STALL_MS 200u
/* The weight image's first block on the card (unit_main.c's UNIT_WEIGHTS_LBA). */
#define WEIGHTS_LBA 2048u
#define SECTOR 512u

/* Semihosting open modes (the ARM semihosting specification's fopen mode numbers). */
#define SH_MODE_RB 1
#define SH_MODE_RPLUSB 3

#define MCAUSE_TIMER 0x80000007u
#define MCAUSE_EXTERNAL 0x8000000Bu
#define MSTATUS_MIE (1u << 3)
/* Bytes received and not yet taken by the main loop (a power of two). */
#define RX_RING 2048u

static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail;  /* written by the trap handler / the main loop only */
static int weights_fd = -1;
static int card_fd[2] = {-1, -1};
static int serial_stalled;

static inline uint8_t uart_get(uint32_t reg) { return *(volatile uint8_t *)(UART_BASE + reg); }
static inline void uart_put(uint32_t reg, uint8_t v) { *(volatile uint8_t *)(UART_BASE + reg) = v; }
static inline void mmio_put32(uint32_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }
static inline uint32_t mmio_get32(uint32_t addr) { return *(volatile uint32_t *)addr; }

static uint64_t mtime(void)
{
    volatile uint32_t *t = (volatile uint32_t *)CLINT_MTIME;
    uint32_t hi, lo;
    do {
        hi = t[1];
        lo = t[0];
    } while (hi != t[1]);
    return ((uint64_t)hi << 32) | lo;
}

uint32_t board_millis(void) { return (uint32_t)(mtime() / MTIME_PER_MS); }

/* --------------------------------------------------------------------------------------------
 * The serial line */

/* Everything the UART holds, into the ring; a byte that finds the ring full is dropped (the
 * framing's CRC then refuses the frame it belonged to, as it would a line error). */
static void uart_drain(void)
{
    while (uart_get(UART_LSR) & LSR_DATA_READY) {
        uint8_t b = uart_get(UART_RBR_THR);
        uint32_t head = rx_head;
        if (head - rx_tail < RX_RING) {
            rx_ring[head % RX_RING] = b;
            rx_head = head + 1u;
        }
    }
}

/* The machine-mode trap handler: the UART's interrupt (claimed and completed at the PLIC) and
 * the timer (disarmed: board_wait only needs it to wake up). Anything else is a fault of this
 * image: stop where a debugger will see it. */
__attribute__((interrupt("machine"), aligned(4))) static void trap(void)
{
    uint32_t cause;
    __asm__ volatile("csrr %0, mcause" : "=r"(cause));
    if (cause == MCAUSE_EXTERNAL) {
        uint32_t irq = mmio_get32(PLIC_CLAIM);
        uart_drain();
        if (irq) mmio_put32(PLIC_CLAIM, irq);
    } else if (cause == MCAUSE_TIMER) {
        volatile uint32_t *cmp = (volatile uint32_t *)CLINT_MTIMECMP;
        cmp[1] = 0xFFFFFFFFu;
        cmp[0] = 0xFFFFFFFFu;
    } else {
        for (;;) __asm__ volatile("wfi");
    }
}

static void uart_init(void)
{
    uart_put(UART_FCR, FCR_FIFO_CLEAR);
    uart_put(UART_IER, IER_RX_AVAILABLE);
    /* The PLIC passes the UART's line to hart 0's M-mode context (priority 1 > threshold 0). */
    mmio_put32(PLIC_BASE + 4u * UART_IRQ, 1u);
    mmio_put32(PLIC_ENABLE, 1u << UART_IRQ);
    mmio_put32(PLIC_THRESHOLD, 0u);
    uint32_t vector = (uint32_t)(uintptr_t)&trap, external = MIE_MEIE, on = MSTATUS_MIE;
    __asm__ volatile("csrw mtvec, %0" : : "r"(vector));
    __asm__ volatile("csrs mie, %0" : : "r"(external));
    __asm__ volatile("csrs mstatus, %0" : : "r"(on));
}

uint32_t board_serial_read(uint8_t *dst, uint32_t cap)
{
    uint32_t n = 0, tail = rx_tail;
    while (n < cap && tail != rx_head) dst[n++] = rx_ring[tail++ % RX_RING];
    rx_tail = tail;
    return n;
}

/* Wait for the holding register; 0 when the line has not moved for SERIAL_STALL_MS. */
static int thr_ready(void)
{
    if (uart_get(UART_LSR) & LSR_THR_EMPTY) return 1;
    uint64_t deadline = mtime() + (uint64_t)SERIAL_STALL_MS * MTIME_PER_MS;
    while (mtime() < deadline)
        if (uart_get(UART_LSR) & LSR_THR_EMPTY) return 1;
    return 0;
}

void board_serial_write(const uint8_t *bytes, uint32_t len)
{
    if (serial_stalled) {
        /* Frames are dropped whole until the line takes a byte again; then a delimiter first,
         * so that the half frame left on the line ends there and costs only itself. */
        if (!(uart_get(UART_LSR) & LSR_THR_EMPTY)) return;
        serial_stalled = 0;
        uart_put(UART_RBR_THR, 0);
    }
    for (uint32_t i = 0; i < len; i++) {
        if (!thr_ready()) {
            serial_stalled = 1;
            return;
        }
        uart_put(UART_RBR_THR, bytes[i]);
    }
}

/* --------------------------------------------------------------------------------------------
 * Sleeping */

void board_wait(uint32_t ms)
{
    uint64_t until = mtime() + (uint64_t)ms * MTIME_PER_MS;
    volatile uint32_t *cmp = (volatile uint32_t *)CLINT_MTIMECMP;
    /* Written high word first through an impossible value, so that no intermediate compare
     * value fires early. */
    cmp[1] = 0xFFFFFFFFu;
    cmp[0] = (uint32_t)until;
    cmp[1] = (uint32_t)(until >> 32);
    uint32_t timer = MIE_MTIE, on = MSTATUS_MIE;
    /* Interrupts off between the check and WFI (a byte arriving in between would otherwise be
     * taken before WFI and leave it sleeping until the timer); WFI still wakes on a pending
     * one, which is taken as soon as they are on again. */
    __asm__ volatile("csrc mstatus, %0" : : "r"(on));
    __asm__ volatile("csrs mie, %0" : : "r"(timer));
    if (rx_tail == rx_head) __asm__ volatile("wfi");
    __asm__ volatile("csrs mstatus, %0" : : "r"(on));
    __asm__ volatile("csrc mie, %0" : : "r"(timer));
}

/* --------------------------------------------------------------------------------------------
 * Files on the host (semihosting) */

static int host_pread(int fd, uint32_t offset, uint8_t *dst, uint32_t len)
{
    if (fd < 0 || sys_semihost_seek(fd, offset) != 0) return -1;
    uintptr_t left = sys_semihost_read(fd, dst, len);  /* the bytes NOT read */
    if (left > len) return -1;
    memset(dst + (len - left), 0, left);  /* past the end of the file: zeros, as on a card */
    return 0;
}

int board_sd_read_blocks(uint32_t lba, uint8_t *dst, uint32_t count)
{
    if (lba < WEIGHTS_LBA) return -1;
    return host_pread(weights_fd, (lba - WEIGHTS_LBA) * SECTOR, dst, count * SECTOR);
}

int board_card_read(uint32_t file, uint32_t offset, uint8_t *dst, uint32_t len)
{
    if (file > CAT_CARD_JOURNAL) return -1;
    return host_pread(card_fd[file], offset, dst, len);
}

int board_card_write(uint32_t file, uint32_t offset, const uint8_t *src, uint32_t len)
{
    if (file > CAT_CARD_JOURNAL) return -1;
    int fd = card_fd[file];
    if (fd < 0 || offset + len > (uint32_t)sys_semihost_flen(fd)) return -1;  /* never grow */
    if (sys_semihost_seek(fd, offset) != 0) return -1;
    return sys_semihost_write(fd, src, len) == 0 ? 0 : -1;
}

/* --------------------------------------------------------------------------------------------
 * What the emulated board does not have */

void board_lcd_show(const uint8_t *rgb, uint32_t len)
{
    (void)rgb;
    (void)len;
}
int board_dac_speak(uint32_t verdict)
{
    (void)verdict;
    return 0;
}
int board_dac_busy(void) { return 0; }

/* --------------------------------------------------------------------------------------------
 * Start: the identity from the command line, the files opened, the UART set up */

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The value of `key=` in the space-separated command line, hex-decoded into `dst` (at most
 * `cap` bytes, the rest zero). */
static void hex_arg(const char *line, const char *key, uint8_t *dst, uint32_t cap)
{
    size_t klen = strlen(key);
    memset(dst, 0, cap);
    for (const char *p = line; *p; p++) {
        if ((p != line && p[-1] != ' ') || strncmp(p, key, klen) != 0 || p[klen] != '=') continue;
        p += klen + 1;
        for (uint32_t i = 0; i < cap; i++, p += 2) {
            int hi = hex_nibble(p[0]), lo = hi < 0 ? -1 : hex_nibble(p[1]);
            if (hi < 0 || lo < 0) return;
            dst[i] = (uint8_t)(hi << 4 | lo);
        }
        return;
    }
}

void board_identity(cat_identity_t *id)
{
    static char line[256];
    memset(id, 0, sizeof *id);
    if (sys_semihost_get_cmdline(line, sizeof line) != 0) line[0] = 0;
    line[sizeof line - 1] = 0;
    hex_arg(line, "serial", (uint8_t *)id->serial, sizeof id->serial);
    hex_arg(line, "weights", id->weights_sha256, sizeof id->weights_sha256);
    hex_arg(line, "clips", id->clips_sha256, sizeof id->clips_sha256);
    weights_fd = sys_semihost_open("WEIGHTS.QCW", SH_MODE_RB);
    card_fd[CAT_CARD_RESERVE] = sys_semihost_open("RESERVE.QCR", SH_MODE_RPLUSB);
    card_fd[CAT_CARD_JOURNAL] = sys_semihost_open("JOURNAL.QCJ", SH_MODE_RPLUSB);
    uart_init();
}
