// `wasmlb rewrite <in> <out> …`: the subcommand, ready to be added to the CLI's commander program with
// addRewriteCommand(program). Flags: ours (--dnat, --snat) and tcprewrite's (-r/--portmap, -N/--pnat,
// -S/--srcipmap, -D/--dstipmap, -C/--fixcsum) with tcprewrite's meaning; --engine; --json.

import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { stat } from 'node:fs/promises';
import { PcapError } from '../pcap/errors.ts';
import { RuleError, parseRules, type RuleOptions } from './rules.ts';
import { rewriteFile, type RewriteEngine, type RewriteSummary } from './rewrite.ts';

export interface RewriteCommandOptions extends RuleOptions {
  engine?: RewriteEngine;
  trustChecksums?: boolean;
  json?: boolean;
  /** Show a progress bar (default: when stderr is a terminal). */
  progress?: boolean;
}

const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

/** Runs one rewrite, with a progress bar on a terminal, and prints the summary (text or --json). */
export async function runRewrite(input: string, output: string, o: RewriteCommandOptions, print: (s: string) => void = console.log): Promise<RewriteSummary> {
  const rules = parseRules(o);
  const size = (await stat(input)).size;
  const showBar = (o.progress ?? process.stderr.isTTY === true) && !o.json;
  const bar = showBar ? new cliProgress.SingleBar({ format: 'rewrite [{bar}] {percentage}% | {packets} packets', stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
  bar?.start(size, 0, { packets: 0 });
  let summary: RewriteSummary;
  try {
    summary = await rewriteFile(input, output, rules, {
      engine: o.engine ?? 'auto',
      trustChecksums: o.trustChecksums ?? false,
      onProgress: (p) => bar?.update(p.bytesRead, { packets: p.packets }),
    });
    bar?.update(size, { packets: summary.packetsIn });
  } finally {
    bar?.stop();
  }
  if (o.json) print(JSON.stringify(summary));
  else {
    print(`${input} → ${output}: ${summary.packetsIn} packets in, ${summary.packetsOut} out, ${summary.rewritten} rewritten`);
    print(`engine ${summary.engine}${summary.engine === 'firmware' ? ` (${summary.firmwarePackets} in wasm, ${summary.referencePackets} by the reference rewriter)` : ''}, ${summary.seconds.toFixed(3)} s, ${summary.mpps.toFixed(2)} Mpps`);
    for (const r of summary.fallbackReasons) print(`reference rewriter because: ${r}`);
    if (summary.tcprewriteAborts > 0) print(`${summary.tcprewriteAborts} packet(s) would make tcprewrite abort (IPv4 ethertype, other IP version): written unchanged`);
  }
  return summary;
}

/** Adds the `rewrite` subcommand. Rule and capture errors become one line on stderr and exit code 2. */
export function addRewriteCommand(program: Command): Command {
  return program
    .command('rewrite')
    .description('rewrite a capture with static NAT rules, byte-identical to tcprewrite for the same mapping')
    .argument('<in>', 'input capture (pcap or pcapng)')
    .argument('<out>', 'output pcap')
    .option('--dnat <VIP[:PORT]=ADDR[:PORT]>', 'destination NAT (repeatable)', collect)
    .option('--snat <ADDR[:PORT]=ADDR[:PORT]>', 'source NAT (repeatable)', collect)
    .option('-r, --portmap <FROM[-TO]:PORT,…>', "tcprewrite's port map: source and destination ports (repeatable)", collect)
    .option('-N, --pnat <CIDR:CIDR,…>', "tcprewrite's pseudo-NAT: source and destination addresses", collect)
    .option('-S, --srcipmap <CIDR:CIDR,…>', "tcprewrite's source address map", collect)
    .option('-D, --dstipmap <CIDR:CIDR,…>', "tcprewrite's destination address map", collect)
    .option('-C, --fixcsum', 'also recompute IPv6 TCP/UDP checksums (IPv4 ones always are, as in tcprewrite)')
    .addOption(new Option('--engine <engine>', 'firmware: wildcard affinities in wasm; reference: TypeScript').choices(['auto', 'firmware', 'reference']).default('auto'))
    .option('--trust-checksums', 'firmware engine: do not verify input checksums (faster; a wrong one stays wrong where tcprewrite corrects it)')
    .option('--json', 'print the summary as one JSON object')
    .action(async (input: string, output: string, o: RewriteCommandOptions) => {
      try {
        await runRewrite(input, output, o);
      } catch (e) {
        if (e instanceof RuleError || e instanceof PcapError) {
          process.stderr.write(`wasmlb rewrite: ${e.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw e;
      }
    });
}
