#!/usr/bin/env node
// The CLI is TypeScript run through tsx's loader, so the installed command and the
// tests run the very same source (no separate compile step to fall out of date).
import { register } from 'tsx/esm/api';

register();
await import('../host/cli.ts');
