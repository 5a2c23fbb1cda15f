/* die_main.c: the die unit's entry point on the CH32V003 (RV32EC at 48 MHz, picolibc), linked by
 * `make rv32-die`. It owns the one static unit and wires the firmware core (die_unit.c) to the
 * board at register level, so that `size` and -fstack-usage measure what the unit really carries:
 *
 *   clock    HSI 24 MHz x 2 (PLL) = 48 MHz, one flash wait state (FLASH_ACTLR: >= 24 MHz needs it)
 *   serial   USART1, 115200 8N1, TX PD5 / RX PD6 to a USB-serial bridge; bytes arrive by DMA1
 *            channel 5 into a circular buffer (no interrupt, no lost byte while a roll runs);
 *            frames go out polled, byte by byte
 *   display  SSD1306 128x64 at I2C address 0x3C on I2C1 (SCL PC2, SDA PC1, 400 kHz), page
 *            addressing mode: the core writes it a page run at a time
 *   button   PC4 to ground, internal pull-up; the core debounces the raw level
 *   clock    SysTick counting HCLK/8 (6 MHz), turned into milliseconds by subtraction (no divide)
 *   serial   "die-" and the chip's unique ID (ESIG) in hex
 *
 * No interrupts are used: the main loop polls the DMA position, the unit core and the clock. The
 * protocol itself is entirely die_unit.c's (the simulator and the QEMU test run the same file). */
#include <stdint.h>
#include <string.h>

#include "die_unit.h"
#include "die_weights.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

/* RCC, flash, GPIO (CH32V003 reference manual). */
#define RCC_CTLR REG(0x40021000u)
#define RCC_CFGR0 REG(0x40021004u)
#define RCC_AHBPCENR REG(0x40021014u)
#define RCC_APB2PCENR REG(0x40021018u)
#define RCC_APB1PCENR REG(0x4002101Cu)
#define FLASH_ACTLR REG(0x40022000u)
#define GPIOC_CFGLR REG(0x40011000u)
#define GPIOC_INDR REG(0x40011008u)
#define GPIOC_OUTDR REG(0x4001100Cu)
#define GPIOD_CFGLR REG(0x40011400u)
/* USART1, DMA1 channel 5 (USART1_RX), I2C1, SysTick, the unique ID. */
#define USART1_STATR REG(0x40013800u)
#define USART1_DATAR_ADDR 0x40013804u
#define USART1_BRR REG(0x40013808u)
#define USART1_CTLR1 REG(0x4001380Cu)
#define USART1_CTLR3 REG(0x40013814u)
#define DMA1_CFGR5 REG(0x40020058u)
#define DMA1_CNTR5 REG(0x4002005Cu)
#define DMA1_PADDR5 REG(0x40020060u)
#define DMA1_MADDR5 REG(0x40020064u)
#define I2C1_CTLR1 REG(0x40005400u)
#define I2C1_CTLR2 REG(0x40005404u)
#define I2C1_DATAR REG(0x40005410u)
#define I2C1_STAR1 REG(0x40005414u)
#define I2C1_STAR2 REG(0x40005418u)
#define I2C1_CKCFGR REG(0x4000541Cu)
#define STK_CTLR REG(0xE000F000u)
#define STK_CNT REG(0xE000F008u)
#define ESIG_UNIID1 REG(0x1FFFF7E8u)
#define ESIG_UNIID2 REG(0x1FFFF7ECu)

#define HCLK_HZ 48000000u
#define STK_TICKS_PER_MS (HCLK_HZ / 8u / 1000u) /* 6000: SysTick at HCLK/8 */
#define SERIAL_BAUD 115200u
#define USART_BRR_VALUE ((HCLK_HZ + SERIAL_BAUD / 2u) / SERIAL_BAUD) /* 417: 16 x (26 + 1/16) */
#define I2C_FAST_CCR (HCLK_HZ / (3u * 400000u))                      /* 40: 400 kHz, duty 2:1 */
#define SSD1306_ADDR (0x3Cu << 1)
#define RX_RING 128u  /* > the longest frame the unit takes (DIE_UNIT_RX_BYTES + COBS + delimiter) */
#define BUTTON_PIN 4u /* PC4 */
/* Bounded waits for the I2C flags: a missing display must not hang the unit. */
#define I2C_SPIN 2000u

typedef struct {
    uint32_t last_cnt;   /* SysTick count at the last whole millisecond */
    uint32_t ms;
    uint32_t rx_tail;    /* next ring byte to hand to the core */
} board_t;

static die_unit_t unit;
static board_t board;
static uint8_t rx_ring[RX_RING];

/* --------------------------------------------------------------------------------------------
 * Clock, pins, peripherals */

static void clock_init(void)
{
    FLASH_ACTLR = 1u;                 /* one wait state: 24 MHz < SYSCLK <= 48 MHz */
    RCC_CFGR0 &= ~((15u << 4) | (1u << 16)); /* HCLK = SYSCLK; the PLL from HSI */
    RCC_CTLR |= 1u << 24;             /* PLLON */
    while (!(RCC_CTLR & (1u << 25))) {
    }
    RCC_CFGR0 = (RCC_CFGR0 & ~3u) | 2u; /* SYSCLK = PLL */
    while ((RCC_CFGR0 & (3u << 2)) != (2u << 2)) {
    }
    RCC_AHBPCENR |= 1u;                                       /* DMA1 */
    RCC_APB2PCENR |= (1u << 0) | (1u << 4) | (1u << 5) | (1u << 14); /* AFIO, GPIOC, GPIOD, USART1 */
    RCC_APB1PCENR |= 1u << 21;                                /* I2C1 */
    STK_CTLR = 1u;                    /* enabled, HCLK/8, counting up, free running */
}

/* A GPIO pin's 4-bit mode/config nibble in a CFGLR register. */
static void pin_mode(volatile uint32_t *cfglr, uint32_t pin, uint32_t nibble)
{
    uint32_t at = pin << 2;
    *cfglr = (*cfglr & ~(15u << at)) | (nibble << at);
}

static void serial_init(void)
{
    pin_mode(&GPIOD_CFGLR, 5u, 0xBu); /* PD5 TX: alternate push-pull, 50 MHz */
    pin_mode(&GPIOD_CFGLR, 6u, 0x4u); /* PD6 RX: floating input */
    DMA1_PADDR5 = USART1_DATAR_ADDR;
    DMA1_MADDR5 = (uint32_t)(uintptr_t)rx_ring;
    DMA1_CNTR5 = RX_RING;
    DMA1_CFGR5 = (1u << 7) | (1u << 5) | 1u; /* memory increment, circular, enable */
    USART1_BRR = USART_BRR_VALUE;
    USART1_CTLR3 = 1u << 6;                 /* DMA for reception */
    USART1_CTLR1 = (1u << 13) | (1u << 3) | (1u << 2); /* UE, TE, RE */
}

static void i2c_init(void)
{
    pin_mode(&GPIOC_CFGLR, 1u, 0xFu); /* PC1 SDA: alternate open drain */
    pin_mode(&GPIOC_CFGLR, 2u, 0xFu); /* PC2 SCL */
    I2C1_CTLR2 = HCLK_HZ / 1000000u;  /* the peripheral clock in MHz */
    I2C1_CKCFGR = (1u << 15) | I2C_FAST_CCR;
    I2C1_CTLR1 = 1u;                  /* PE */
}

static void button_init(void)
{
    pin_mode(&GPIOC_CFGLR, BUTTON_PIN, 0x8u); /* input with pull-up/down ... */
    GPIOC_OUTDR |= 1u << BUTTON_PIN;          /* ... up */
}

/* --------------------------------------------------------------------------------------------
 * I2C and the SSD1306 */

static int i2c_wait(uint32_t flag)
{
    uint32_t spin;
    for (spin = 0; spin < I2C_SPIN; spin++)
        if (I2C1_STAR1 & flag) return 0;
    return -1;
}

/* One transfer to the display: a control byte (0x00 commands, 0x40 data) and `n` bytes. */
static void ssd1306_send(uint8_t control, const uint8_t *bytes, uint32_t n)
{
    uint32_t i;
    I2C1_CTLR1 |= 1u << 8;                   /* START */
    if (i2c_wait(1u << 0) == 0) {            /* SB */
        I2C1_DATAR = SSD1306_ADDR;
        if (i2c_wait(1u << 1) == 0) {        /* ADDR */
            (void)I2C1_STAR2;                /* reading STAR2 clears ADDR */
            I2C1_DATAR = control;
            for (i = 0; i < n; i++) {
                if (i2c_wait(1u << 7) != 0) break; /* TXE */
                I2C1_DATAR = bytes[i];
            }
            (void)i2c_wait(1u << 2);         /* BTF: the last byte is out */
        }
    }
    I2C1_CTLR1 |= 1u << 9;                   /* STOP */
}

static const uint8_t ssd1306_setup[] = {
    0xAE,       /* display off */
    0xD5, 0x80, /* clock */
    0xA8, 0x3F, /* 64 rows */
    0xD3, 0x00, /* no offset */
    0x40,       /* start line 0 */
    0x8D, 0x14, /* charge pump on */
    0x20, 0x02, /* page addressing mode */
    0xA1, 0xC8, /* column 0 on the left, row 0 on top */
    0xDA, 0x12, /* COM pins */
    0x81, 0xCF, /* contrast */
    0xD9, 0xF1, /* pre-charge */
    0xDB, 0x40, /* VCOMH */
    0xA4, 0xA6, /* show RAM, not inverted */
    0xAF        /* display on */
};

static void oled_write(void *ctx, uint32_t page, uint32_t col, const uint8_t *data, uint32_t n)
{
    uint8_t cmd[3];
    (void)ctx;
    cmd[0] = (uint8_t)(0xB0u | page);
    cmd[1] = (uint8_t)(col & 15u);
    cmd[2] = (uint8_t)(0x10u | (col >> 4));
    ssd1306_send(0x00, cmd, sizeof cmd);
    ssd1306_send(0x40, data, n);
}

/* --------------------------------------------------------------------------------------------
 * The board's callbacks */

static void serial_write(void *ctx, const uint8_t *frame, uint32_t len)
{
    uint32_t i;
    (void)ctx;
    for (i = 0; i < len; i++) {
        while (!(USART1_STATR & (1u << 7))) { /* TXE */
        }
        REG(USART1_DATAR_ADDR) = frame[i];
    }
}

/* Whole milliseconds of SysTick (6,000 ticks each), by subtraction: called at least every few
 * milliseconds (the main loop), so the loop below runs a handful of times at most. */
static uint32_t millis(void *ctx)
{
    board_t *b = ctx;
    uint32_t now = STK_CNT;
    while ((uint32_t)(now - b->last_cnt) >= STK_TICKS_PER_MS) {
        b->last_cnt += STK_TICKS_PER_MS;
        b->ms++;
    }
    return b->ms;
}

static int button(void *ctx)
{
    (void)ctx;
    return (GPIOC_INDR & (1u << BUTTON_PIN)) == 0; /* pressed pulls it low */
}

/* The bytes DMA wrote since the last call, handed to the core in at most two runs. */
static void serial_poll(board_t *b)
{
    uint32_t head = RX_RING - DMA1_CNTR5; /* where DMA writes next */
    if (head >= RX_RING) head = 0;
    if (head < b->rx_tail) {
        die_unit_rx(&unit, rx_ring + b->rx_tail, RX_RING - b->rx_tail);
        b->rx_tail = 0;
    }
    if (head > b->rx_tail) {
        die_unit_rx(&unit, rx_ring + b->rx_tail, head - b->rx_tail);
        b->rx_tail = head;
    }
}

static void hex(char *out, uint32_t v, uint32_t digits)
{
    uint32_t i;
    for (i = 0; i < digits; i++) {
        uint32_t d = (v >> ((digits - 1u - i) << 2)) & 15u;
        out[i] = (char)(d < 10u ? '0' + d : 'a' + d - 10u);
    }
}

int main(void)
{
    die_board_t io;
    die_identity_t id;
    clock_init();
    serial_init();
    i2c_init();
    button_init();
    ssd1306_send(0x00, ssd1306_setup, sizeof ssd1306_setup);
    memset(&id, 0, sizeof id);
    memcpy(id.serial, "die-", 4);
    hex(id.serial + 4, ESIG_UNIID1, 8u);
    hex(id.serial + 12, ESIG_UNIID2, 4u);
    memcpy(id.weights_sha256, die_weights_sha256, sizeof id.weights_sha256);
    io.serial_write = serial_write;
    io.millis = millis;
    io.oled_write = oled_write;
    io.button = button;
    io.ctx = &board;
    board.last_cnt = STK_CNT;
    die_unit_init(&unit, &io, &id, &die_model);
    for (;;) {
        serial_poll(&board);
        (void)die_unit_poll(&unit);
    }
}
