// The page's shared state, a tiny event bus, and the loads several views
// share (agents, scenarios, policy).
import { api } from './api.js';
import { reportError } from './notify.js';

export const state = {
  config: null, // GET /ui/api/config
  session: null, // {user, operator, csrf}
  agents: [],
  agentsError: '',
  scenarios: [],
  policy: null, // GET /ui/api/policy
  policyError: '', // why the policy cannot be read (not an operator)
  pickedAgentId: null,
};

const listeners = new Map();

export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
  return () => listeners.get(event).delete(fn);
}

export function emit(event, detail) {
  for (const fn of listeners.get(event) || []) {
    try {
      fn(detail);
    } catch (e) {
      reportError(e);
    }
  }
}

export const signedIn = () => !!state.session;
export const isOperator = () => !!(state.session && state.session.operator);
export const currentUser = () => (state.session && state.session.user) || null;
export const isDemo = () => !!(state.config && state.config.demo);
export const users = () => (state.config && state.config.users) || [];

export function agentById(id) {
  return state.agents.find((a) => a.client_id === id) || null;
}

export function agentByName(name) {
  return state.agents.find((a) => a.client_name === name && a.demo)
    || state.agents.find((a) => a.client_name === name) || null;
}

export function pickedAgent() {
  return state.pickedAgentId ? agentById(state.pickedAgentId) : null;
}

export function userName(sub) {
  const u = users().find((x) => x.sub === sub);
  return u ? u.name : sub;
}

const PICK_KEY = 'pbac.dashboard.agent';

export function pickAgent(id) {
  state.pickedAgentId = id;
  try {
    if (id) localStorage.setItem(PICK_KEY, id);
    else localStorage.removeItem(PICK_KEY);
  } catch {
    // storage unavailable: keep it in memory
  }
  emit('picked', id);
}

export function restorePick() {
  try {
    const id = localStorage.getItem(PICK_KEY);
    if (id && agentById(id)) state.pickedAgentId = id;
  } catch {
    // ignore
  }
}

let agentsLoad = null;

export function loadAgents() {
  if (agentsLoad) return agentsLoad;
  agentsLoad = (async () => {
    try {
      const r = await api('GET', '/ui/api/agents');
      state.agents = (r && r.agents) || [];
      state.agentsError = '';
      if (state.pickedAgentId && !agentById(state.pickedAgentId)) state.pickedAgentId = null;
      if (!state.pickedAgentId) restorePick();
    } catch (e) {
      if (e.status === 401) return;
      state.agents = [];
      state.agentsError = e.message;
    } finally {
      agentsLoad = null;
    }
    emit('agents');
  })();
  return agentsLoad;
}

export async function loadScenarios() {
  try {
    const r = await api('GET', '/ui/api/scenarios');
    state.scenarios = (r && r.scenarios) || [];
  } catch (e) {
    reportError(e, 'Load the scenarios');
    state.scenarios = [];
  }
  emit('scenarios');
}

// loadPolicy fetches the policy state; 'policy' is emitted with
// {changed: true} when the active version is not the one seen before.
export async function loadPolicy() {
  const before = state.policy && state.policy.active ? state.policy.active.version : null;
  let p;
  try {
    p = await api('GET', '/ui/api/policy');
    state.policyError = '';
  } catch (e) {
    // Outside the demo only an operator reads the policy (403): say so
    // where the policy shows, rather than as a failure.
    if (e.status !== 403) throw e;
    p = null;
    state.policyError = e.message;
  }
  state.policy = p;
  const after = p && p.active ? p.active.version : null;
  emit('policy', { changed: before !== after, version: after });
  return p;
}

export function activeVersion() {
  return state.policy && state.policy.active ? state.policy.active.version : '';
}

export function reset() {
  state.session = null;
  state.agents = [];
  state.agentsError = '';
  state.scenarios = [];
  state.policy = null;
  state.policyError = '';
  state.pickedAgentId = null;
}
