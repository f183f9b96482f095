package kernel

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Map and program names inside the collection.
const (
	mapEgress  = "egress"
	mapVerdict = "verdict"
	mapCtl     = "ctl"
	mapBytes   = "bytes"
	mapPassed  = "passed"
	mapEvents  = "events"
	progName   = "redirect"
)

// Verdict return codes of an sk_skb program (uapi enum sk_action).
const (
	skDrop = 0
	skPass = 1
)

// Modes of a socket's direction, in ctl.Mode.
const (
	modeRun  = 0 // redirect to the peer's egress
	modeHold = 1 // pass to the socket's own queue, for user space
)

// ctl is a socket's control value, written only by user space (a whole
// value at a time, so the program always sees one consistent version).
type ctl struct {
	Peer  uint64 // the peer socket's cookie
	Mode  uint64 // modeRun or modeHold
	Check uint64 // tell user space when bytes[cookie] crosses this
}

// objects is what the kernel path loads: two SOCKHASHes, three HASHes, a
// ring buffer and the stream-verdict program.
//
// Why two SOCKHASHes (forwarding-facts.md, trap 3): a socket's sk_psock
// lives as long as the socket is in any sockmap, and the verdict program
// runs only for sockets in the map it is attached to. Every socket first
// goes into "egress", which has no program: that gives it a psock, so it
// can be a redirect target, while its own received data still queues
// normally. Only then are the two sockets put into "verdict". So when the
// first of them starts redirecting, its peer is already a valid target and
// no byte can land in the gap between the two inserts.
//
// Why sockets never leave the maps while they may still receive: taking
// a socket out of "verdict" clears the psock's program before restoring
// data_ready, and an skb the kernel is verdicting at that moment meets no
// program and is dropped (seen here: one 64 KiB skb lost in a 64 MiB
// transfer); leaving the last map frees the psock with whatever it still
// queues. So user space never removes a live socket: it changes ctl.mode
// and the program holds the data in the socket's own queue instead, where
// recv reads it, TCP's window accounts for it, and nothing is lost.
type objects struct {
	egress  *ebpf.Map // cookie → socket, redirect targets, no program
	verdict *ebpf.Map // cookie → socket, stream verdict attached
	ctl     *ebpf.Map // cookie → ctl (user space writes)
	bytes   *ebpf.Map // cookie → bytes redirected from that socket (program writes)
	passed  *ebpf.Map // cookie → bytes held in the socket's own queue (program writes)
	events  *ebpf.Map // ring buffer of cookies whose counter crossed ctl.Check
	prog    *ebpf.Program
}

// program is the stream verdict, about 40 instructions. For an skb of
// length len on the socket with cookie c:
//
//	len == 0                 → SK_DROP  (a bare FIN: trap 1)
//	k = ctl[c]               → SK_PASS if none
//	k.mode == hold: passed[c] += len; if it crossed k.check: event
//	    → SK_PASS (the socket's own queue)
//	sk_redirect_hash(skb, egress, k.peer) fails → as hold
//	bytes[c] += len; if it crossed k.check: ringbuf_output(events, c)
//	→ SK_PASS with the redirect set: to the peer's egress
//
// Passing instead of dropping keeps every byte TCP has acked; user space
// reads passed bytes with recv.
//
// The check is the backpressure hook (trap 8). A redirected skb waits on
// the peer's psock until the peer's send queue has room, and on this
// kernel it is charged to neither socket: the source's receive window
// stays open, so a receiver that stops reading would let its sender fill
// kernel memory without bound. User space sets check where the bytes owed
// to the peer's send queue could reach Options.MaxQueued; the event makes
// it look, and move the pair to user space if so. In hold mode the same
// check watches the held bytes: held skbs can also wait uncharged, on a
// psock backlog behind bytes for the other direction, and then nothing
// closes the sender's window either (see holdLimit).
func program() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // __sk_buff.len
		asm.JEq.Imm(asm.R7, 0, "drop"),

		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),

		asm.LoadMapPtr(asm.R1, 0).WithReference(mapCtl),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R9, asm.R0), // ctl, valid across calls (RCU)
		asm.LoadMem(asm.R1, asm.R9, 8, asm.DWord),
		asm.JEq.Imm(asm.R1, modeRun, "redirect"),

		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPassed).WithSymbol("hold"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.StoreXAdd(asm.R0, asm.R7, asm.DWord),
		asm.LoadMem(asm.R8, asm.R0, 0, asm.DWord), // held after
		asm.Ja.Label("check"),

		asm.LoadMem(asm.R1, asm.R9, 0, asm.DWord).WithSymbol("redirect"), // peer
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, 0).WithReference(mapEgress),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0), // egress, not BPF_F_INGRESS
		asm.FnSkRedirectHash.Call(),
		asm.JNE.Imm(asm.R0, skPass, "hold"),

		asm.LoadMapPtr(asm.R1, 0).WithReference(mapBytes),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.StoreXAdd(asm.R0, asm.R7, asm.DWord),
		// Only this socket's verdicts (serialised by its lock) write
		// its counter, so reading it back after the add is exact.
		asm.LoadMem(asm.R8, asm.R0, 0, asm.DWord), // counter after

		// Tell user space when the counter (redirected, or held in
		// hold mode) crosses ctl.check.
		asm.LoadMem(asm.R1, asm.R9, 16, asm.DWord).WithSymbol("check"),
		asm.JLT.Reg(asm.R8, asm.R1, "pass"), // not reached yet
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.Sub.Reg(asm.R2, asm.R7),         // counter before
		asm.JGE.Reg(asm.R2, asm.R1, "pass"), // crossed earlier
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapEvents),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.Mov.Imm(asm.R3, 8),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),

		// SK_PASS: with the redirect set it means redirect.
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),

		asm.Mov.Imm(asm.R0, skDrop).WithSymbol("drop"),
		asm.Return(),
	}
}

// eventRing is the ring buffer's size: 4096 events of 16 bytes.
const eventRing = 64 << 10

// load creates the maps and the program and attaches the program to the
// verdict map, before any socket is inserted (a psock takes the map's
// programs when the socket joins).
func load(maxPairs int) (*objects, error) {
	sockets := uint32(2 * maxPairs)
	sockHash := func() *ebpf.MapSpec {
		return &ebpf.MapSpec{Type: ebpf.SockHash, KeySize: 8, ValueSize: 8, MaxEntries: sockets}
	}
	hash := func(value uint32) *ebpf.MapSpec {
		// No preallocation: an idle forwarder holds no entries.
		return &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: value, MaxEntries: sockets, Flags: unix.BPF_F_NO_PREALLOC}
	}
	spec := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			mapEgress:  sockHash(),
			mapVerdict: sockHash(),
			mapCtl:     hash(24),
			mapBytes:   hash(8),
			mapPassed:  hash(8),
			mapEvents:  {Type: ebpf.RingBuf, MaxEntries: eventRing},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			progName: {
				Type:         ebpf.SkSKB,
				AttachType:   ebpf.AttachSkSKBStreamVerdict,
				Instructions: program(),
				License:      "Dual MIT/GPL",
			},
		},
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			// cilium/ebpf adds "MEMLOCK may be too low" to any EPERM;
			// on these kernels (memcg accounting, unprivileged BPF
			// disabled) the cause is a missing capability instead.
			return nil, fmt.Errorf("%w: loading BPF maps and program: %w (the kernel path needs both CAP_BPF and CAP_NET_ADMIN; this is not a MEMLOCK limit)",
				ErrPermission, unix.EPERM)
		}
		return nil, fmt.Errorf("loading BPF maps and program: %w", err)
	}
	o := &objects{
		egress:  coll.Maps[mapEgress],
		verdict: coll.Maps[mapVerdict],
		ctl:     coll.Maps[mapCtl],
		bytes:   coll.Maps[mapBytes],
		passed:  coll.Maps[mapPassed],
		events:  coll.Maps[mapEvents],
		prog:    coll.Programs[progName],
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  o.verdict.FD(),
		Program: o.prog,
		Attach:  ebpf.AttachSkSKBStreamVerdict,
	})
	if err != nil {
		o.close()
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%w: attaching the stream verdict: %w (needs CAP_BPF and CAP_NET_ADMIN)", ErrPermission, err)
		}
		return nil, fmt.Errorf("attaching the stream verdict: %w", err)
	}
	return o, nil
}

// close detaches the program and releases the maps. Sockets still in a
// map are released by the kernel with it.
func (o *objects) close() {
	_ = link.RawDetachProgram(link.RawDetachProgramOptions{
		Target:  o.verdict.FD(),
		Program: o.prog,
		Attach:  ebpf.AttachSkSKBStreamVerdict,
	})
	_ = o.prog.Close()
	_ = o.verdict.Close()
	_ = o.egress.Close()
	_ = o.ctl.Close()
	_ = o.bytes.Close()
	_ = o.passed.Close()
	_ = o.events.Close()
}

// counted returns the bytes the program redirected from the socket with
// cookie c (zero if it has no entry).
func (o *objects) counted(c uint64) uint64 {
	var n uint64
	if err := o.bytes.Lookup(c, &n); err != nil {
		return 0
	}
	return n
}

// held returns the bytes the program passed to the socket's own queue.
func (o *objects) held(c uint64) uint64 {
	var n uint64
	if err := o.passed.Lookup(c, &n); err != nil {
		return 0
	}
	return n
}
