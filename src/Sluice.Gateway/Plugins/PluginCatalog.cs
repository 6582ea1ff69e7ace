using System.Reflection;
using System.Runtime.Loader;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Policies;

namespace Sluice.Gateway.Plugins;

/// <summary>
/// The user's own policies and handlers, loaded by type name (<c>"MyCompany.Policies.Audit, MyCompany.Policies"</c>)
/// from the <c>plugins</c> folder next to the configuration file. Each folder gets its own load context; Sluice's
/// own assemblies always come from the gateway, so a plugin's <c>IMessageInterceptor</c> is the gateway's.
/// </summary>
internal sealed class PluginCatalog
{
    private static readonly Dictionary<string, PluginLoadContext> s_contexts = new(StringComparer.Ordinal);
    private static readonly Lock s_lock = new();

    private readonly string _folder;

    public PluginCatalog(string baseDirectory) => _folder = Path.Combine(baseDirectory, "plugins");

    /// <summary>Whether a policy or handler type string names a .NET type rather than a built-in.</summary>
    public static bool IsTypeName(string type) => type.Contains(',', StringComparison.Ordinal) || type.Contains('.', StringComparison.Ordinal);

    /// <summary>Finds a plugin type, or says why it cannot.</summary>
    public Type? Find(string typeName, out string? error)
    {
        error = null;
        var comma = typeName.IndexOf(',', StringComparison.Ordinal);
        if (comma < 0)
        {
            error = $"'{typeName}' is not a built-in type; a plugin type is written 'Namespace.Type, Assembly'";
            return null;
        }

        var name = typeName[..comma].Trim();
        var assemblyName = typeName[(comma + 1)..].Trim();
        // An assembly name, not a path: nothing outside the plugins folder is loaded.
        if (assemblyName.Length == 0 || assemblyName.IndexOfAny(['/', '\\']) >= 0 || assemblyName.Contains("..", StringComparison.Ordinal))
        {
            error = $"'{assemblyName}' is not an assembly name (plugins are loaded from {_folder} only)";
            return null;
        }

        var file = Path.Combine(_folder, assemblyName + ".dll");
        if (!File.Exists(file))
        {
            error = $"assembly '{assemblyName}' not found: looked for {file}";
            return null;
        }

        try
        {
            var assembly = ContextFor(_folder).LoadFromAssemblyPath(Path.GetFullPath(file));
            var type = assembly.GetType(name, throwOnError: false);
            if (type is null)
            {
                error = $"type '{name}' not found in {assemblyName}";
            }

            return type;
        }
        catch (Exception ex) when (ex is BadImageFormatException or FileLoadException or FileNotFoundException)
        {
            error = $"could not load {file}: {ex.Message}";
            return null;
        }
    }

    /// <summary>Describes a plugin policy type the way the built-ins are described, so both bind and validate alike.</summary>
    public static PolicyType? DescribePolicy(Type type, string typeName, out string? error)
    {
        error = null;
        PolicyKind kind;
        if (typeof(IUpgradePolicy).IsAssignableFrom(type))
        {
            kind = PolicyKind.Upgrade;
        }
        else if (typeof(IMessageInterceptor).IsAssignableFrom(type))
        {
            kind = PolicyKind.Message;
        }
        else
        {
            error = $"'{typeName}' is neither an IMessageInterceptor nor an IUpgradePolicy";
            return null;
        }

        var optionsType = OptionsTypeOf(type) ?? typeof(NoOptions);
        var create = typeof(PluginCatalog).GetMethod(nameof(CreateType), BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(optionsType);
        return (PolicyType)create.Invoke(null, [typeName, kind, type])!;
    }

    /// <summary>The options class of a plugin handler, if its constructor takes one.</summary>
    public static Type? OptionsTypeOf(Type type)
    {
        var constructor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault();
        return constructor?.GetParameters().Select(p => p.ParameterType)
            .FirstOrDefault(t => typeof(IPolicyOptions).IsAssignableFrom(t))
            ?? constructor?.GetParameters().Select(p => p.ParameterType)
                .FirstOrDefault(t => t.IsClass && !t.IsAbstract && t != typeof(string) && t.Name.EndsWith("Options", StringComparison.Ordinal));
    }

    /// <summary>
    /// Creates a plugin instance: its options (a parameter of the options type) and its name (a <see cref="string"/>
    /// parameter) if its constructor asks for them, anything else from the app's services.
    /// </summary>
    public static object Instantiate(Type type, object? options, string name, IServiceProvider services)
    {
        var parameters = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault()?.GetParameters() ?? [];
        var arguments = new List<object>();
        if (options is not null and not NoOptions && parameters.Any(p => p.ParameterType.IsInstanceOfType(options)))
        {
            arguments.Add(options);
        }

        if (parameters.Any(p => p.ParameterType == typeof(string)))
        {
            arguments.Add(name);
        }

        return ActivatorUtilities.CreateInstance(services, type, [.. arguments]);
    }

    private static PolicyType CreateType<TOptions>(string typeName, PolicyKind kind, Type type)
        where TOptions : class =>
        PolicyType.Create<TOptions>(typeName, kind, (options, context) => Instantiate(type, options, context.PolicyName, context.Services));

    private static PluginLoadContext ContextFor(string folder)
    {
        lock (s_lock)
        {
            // One context per folder for the life of the process: reloads find the same types again.
            if (!s_contexts.TryGetValue(folder, out var context))
            {
                context = new PluginLoadContext(folder);
                s_contexts[folder] = context;
            }

            return context;
        }
    }

    /// <summary>The options of a plugin whose constructor takes none: the <c>options</c> object must be empty.</summary>
    internal sealed class NoOptions;

    private sealed class PluginLoadContext(string folder) : AssemblyLoadContext("sluice-plugins:" + folder)
    {
        protected override Assembly? Load(AssemblyName assemblyName)
        {
            // Whatever the gateway itself can load (Sluice, ASP.NET Core, the BCL) is shared, even when the plugin's
            // build output carries its own copy: two copies of Sluice would mean two IMessageInterceptor types.
            try
            {
                return Default.LoadFromAssemblyName(assemblyName);
            }
            catch (FileNotFoundException)
            {
            }

            var candidate = Path.Combine(folder, assemblyName.Name + ".dll");
            return File.Exists(candidate) ? LoadFromAssemblyPath(Path.GetFullPath(candidate)) : null;
        }
    }
}
