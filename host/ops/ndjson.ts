// Reading another wasmlb process's NDJSON log stream (its stderr): every chunk is also handed over raw,
// so a caller can keep the text for error messages; each complete JSON line is parsed once.
import type { Readable } from 'node:stream';

export type JsonLine = Record<string, unknown>;

/** Calls `onLine` for every complete line of `stream` that parses as a JSON object; `onText` gets every chunk. */
export function readJsonLines(stream: Readable, onLine: (line: JsonLine) => void, onText?: (chunk: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    onText?.(chunk);
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (!line.startsWith('{')) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue; // a non-JSON line stays in the raw text only
      }
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) onLine(parsed as JsonLine);
    }
  });
}
