package wire

// Capability flags (lib/kernel/include/dist.hrl). Only those distgate reads or
// checks are named here.
const (
	FlagPublished         uint64 = 0x1
	FlagExtendedRefs      uint64 = 0x4
	FlagFunTags           uint64 = 0x10
	FlagNewFunTags        uint64 = 0x80
	FlagExtendedPidsPorts uint64 = 0x100
	FlagExportPtrTag      uint64 = 0x200
	FlagBitBinaries       uint64 = 0x400
	FlagNewFloats         uint64 = 0x800
	FlagUTF8Atoms         uint64 = 0x10000
	FlagMapTag            uint64 = 0x20000
	FlagBigCreation       uint64 = 0x40000
	FlagHandshake23       uint64 = 0x1000000
	FlagUnlinkID          uint64 = 0x2000000
	FlagMandatory25Digest uint64 = 0x4000000
	FlagNameMe            uint64 = 1 << 33
	FlagV4NC              uint64 = 1 << 34

	// Mandatory25 is the set an OTP 25 acceptor requires (dist.hrl
	// MANDATORY_DFLAGS_25; 16#1070F94 as erts_internal:get_dflags/0 reports).
	Mandatory25 = FlagExtendedRefs | FlagFunTags | FlagNewFunTags |
		FlagExtendedPidsPorts | FlagExportPtrTag | FlagBitBinaries |
		FlagNewFloats | FlagUTF8Atoms | FlagMapTag | FlagBigCreation |
		FlagHandshake23
	// Mandatory26 adds the OTP 26 requirements (new link protocol, bigger
	// pids/ports/refs).
	Mandatory26 = Mandatory25 | FlagUnlinkID | FlagV4NC

	// DefaultHiddenFlags are the flags an OTP 25.2.3 hidden node sends
	// (captured); handy for building test and probe messages.
	DefaultHiddenFlags uint64 = 0x0000000D07DF7FBC
)

// Effective returns the flags as an OTP 25+ acceptor sees them: a peer that
// sets MANDATORY_25_DIGEST is taken to have all eleven OTP 25 mandatory flags
// (dist_util:expand_mandatory_25_flag).
func Effective(flags uint64) uint64 {
	if flags&FlagMandatory25Digest != 0 {
		flags |= Mandatory25
	}
	return flags
}
