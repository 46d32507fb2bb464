// Evaluates a railway.ts with Railway's SDK and prints the desired state it
// declares for each environment, as JSON: {"production": {...}, "staging": {...}}.
import { pathToFileURL } from "node:url";
import { createRailwayContext, project } from "railway/iac";

const [file, ...environments] = process.argv.slice(2);
const program = (await import(pathToFileURL(file).href)).default;
const states: Record<string, unknown> = {};
for (const environment of environments) {
  states[environment] = await program(createRailwayContext({ environment }), project);
}
console.log(JSON.stringify(states));
