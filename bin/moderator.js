#!/usr/bin/env node
// The installed entry point: Moderator is TypeScript run through tsx, so there is no build step.
import { register } from 'tsx/esm/api';

register();
await import('../main.ts');
