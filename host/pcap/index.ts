// The capture codec: streaming readers of classic pcap and pcapng, a streaming classic pcap writer.
export { PacketBatch, copyPacket, type CapturedPacket, type ByteOrder, type TimestampPrecision, type ClassicRecordFormat } from './batch.ts';
export { PcapError, type PcapErrorCode } from './errors.ts';
export { type CaptureInfo, type CaptureFormat, type InterfaceInfo } from './parser.ts';
export { CaptureReader, CaptureReaderSync, readCapture, type ReadOptions } from './reader.ts';
export { PcapWriter, encodePcap, encodePcapHeader, type PcapWriterOptions } from './writer.ts';
export { PcapngBuilder, type PcapngInterface } from './pcapng.ts';
export * from './linktype.ts';
