// The import graph of src/, enforced by `npm run lint` (depcruise src).
// dependency-cruiser rather than an ESLint import plugin: their no-cycle rules
// skip `import type`, and a type-only cycle is still a cycle between modules.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      severity: 'error',
      comment: 'No import cycles anywhere in src/, type-only imports included.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'domain-is-pure',
      severity: 'error',
      comment:
        'src/domain imports only src/domain and node: built-ins: no packages, no gen/, no other layer.',
      from: { path: '^src/domain/' },
      to: { pathNot: '^src/domain/', dependencyTypesNot: ['core'] },
    },
    {
      name: 'sdk-imports-no-server-code',
      severity: 'error',
      comment:
        'The SDK (src/client) ships without the server: within src/ it imports only src/client and src/wire (gen/ and packages are fine).',
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/(client|wire)/' },
    },
    {
      name: 'sdk-depends-only-on-its-packages',
      severity: 'error',
      comment:
        'The SDK package (packages/sdk) is built from src/client, src/wire and gen/ and depends only on @grpc/grpc-js and @bufbuild/protobuf: those files import no other package.',
      from: { path: '^(src/(client|wire)|gen)/' },
      to: {
        dependencyTypesNot: ['core', 'local'],
        pathNot: '^node_modules/(@grpc/grpc-js|@bufbuild/protobuf)/',
      },
    },
    {
      name: 'wire-imports-no-server-code',
      severity: 'error',
      comment: 'src/wire is shared by the server and the SDK: within src/ it imports only itself.',
      from: { path: '^src/wire/' },
      to: { path: '^src/', pathNot: '^src/wire/' },
    },
    {
      name: 'resolvable',
      severity: 'error',
      comment: 'Every import resolves, so no rule above is blind to one.',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Type-only imports count: they are edges of the graph too.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    // Packages resolve like `moduleResolution: nodenext` does (subpath exports such as @bufbuild/protobuf/wire).
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['types', 'require', 'node', 'default'],
      mainFields: ['types', 'main'],
    },
    exclude: { path: '^(dist|gen/descriptors)/' },
  },
};
