/*
 * Side B of the i.MX Messaging Unit (register layout of the MU in i.MX8M): four
 * transmit and four receive data registers, a status and a control register.
 * Channel n's bits: RFn = receive n full (SR bit 27-n), TEn = transmit n empty
 * (SR bit 23-n); RIEn, the receive interrupt enable, is CR bit 27-n.
 */
#ifndef AMPLINK_MU_H
#define AMPLINK_MU_H

#include <stdint.h>

#include "soc.h"

struct mu_regs {
    volatile uint32_t tr[4];
    volatile uint32_t rr[4];
    volatile uint32_t sr;
    volatile uint32_t cr;
};

#define MU ((struct mu_regs *)SOC_MU_B_BASE)
#define MU_RF(n) (1u << (27u - (n)))
#define MU_TE(n) (1u << (23u - (n)))
#define MU_RIE(n) (1u << (27u - (n)))

/* The words amplink's host sends beside vring notify ids (TI's mailbox messages):
 * all of them are at least MU_WORD_PROTOCOL_FIRST; an echo request is answered at once
 * with an echo reply (the host times the mailbox round trip with it). */
#define MU_WORD_PROTOCOL_FIRST 0xffffff00u
#define MU_WORD_ECHO_REQUEST 0xffffff03u
#define MU_WORD_ECHO_REPLY 0xffffff04u

/* Send a word on channel ch, waiting until the host has read the previous one. */
static inline void mu_send(uint32_t ch, uint32_t word)
{
    while (!(MU->sr & MU_TE(ch))) {
    }
    MU->tr[ch] = word;
}

/* Kick the host with word on channel ch, unless the previous kick is still unread:
 * the host has not looked at the rings for it yet, and when it does it sees what
 * this kick was about (the rings were written before TE was read). No waiting. */
static inline void mu_kick(uint32_t ch, uint32_t word)
{
    if (MU->sr & MU_TE(ch))
        MU->tr[ch] = word;
}

/* Whether a word waits on channel ch. */
static inline int mu_pending(uint32_t ch) { return (MU->sr & MU_RF(ch)) != 0; }

/* Take the word waiting on channel ch (reading it frees the host's transmit slot). */
static inline uint32_t mu_receive(uint32_t ch) { return MU->rr[ch]; }

static inline void mu_rx_interrupt(uint32_t ch, int on)
{
    if (on)
        MU->cr |= MU_RIE(ch);
    else
        MU->cr &= ~MU_RIE(ch);
}

#endif
