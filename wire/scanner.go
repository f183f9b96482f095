package wire

// ScannerProbe is the first message of the CouchDB-era scanners and the
// Metasploit module (erlang-dist-facts.md §4): a legacy 'n' send_name with
// version 7, flags 0x0003499C and the name AAAAAA@AAAAAAA. OTP 25.0–25.2
// close it without a byte; 25.3+ answer "s not_allowed"; it lacks the OTP 25
// mandatory flags. Tests, benches and the probe send exactly these bytes.
var ScannerProbe = []byte("\x00\x15n\x00\x07\x00\x03\x49\x9cAAAAAA@AAAAAAA")
