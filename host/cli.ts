// wasmlb command line: one entry, subcommands. Each subcommand lives in its own module.
import { Command } from 'commander';

const program = new Command();
program.name('wasmlb').description('L4 load balancer with a WebAssembly forwarding agent');
await program.parseAsync(process.argv);
