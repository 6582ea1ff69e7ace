using System.Globalization;
using System.Runtime;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Sluice.Gateway.Admin;
using Microsoft.Extensions.Logging.Abstractions;
using Sluice.Gateway.Configuration;
using Sluice.Gateway.Configuration.Validation;
using Sluice.Gateway.Demo;
using Sluice.Gateway.Integrations;
using Sluice.Gateway.Tls;
using Sluice.Policies;

namespace Sluice.Gateway.Hosting;

/// <summary>Builds the gateway's web application from a configuration file or the embedded demo.</summary>
internal static class GatewayApplication
{
    public const string DefaultUrls = "http://127.0.0.1:5080";

    /// <summary>How long a connection may stay silent before its first request and between requests.</summary>
    public static readonly TimeSpan KeepAliveTimeout = TimeSpan.FromSeconds(15);

    /// <summary>How long a client may take to send a request's line and headers once it has started.</summary>
    public static readonly TimeSpan RequestHeadersTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// What every listener gets: the upgrade handoff, inside TLS on an https:// listener. Kestrel applies endpoint
    /// defaults to the addresses in the order given, and adds TLS to an https:// one only if it has none yet; adding it
    /// here first puts the handoff inside TLS, where it reads the decrypted bytes and the connection can leave its
    /// request. The i-th call is matched to the i-th address by its port too; an endpoint that does not match is left
    /// for Kestrel to secure, and keeps its request over TLS.
    /// </summary>
    internal static Action<ListenOptions> HandoffDefaults(string urls)
    {
        var addresses = urls.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var next = 0;
        return listen =>
        {
            var index = next++;
            if (index < addresses.Length
                && ListenValidator.IsHttps(addresses[index])
                && BindingAddress.Parse(addresses[index]) is { Port: var port }
                && listen.IPEndPoint?.Port == port)
            {
                // With no arguments, Kestrel's https defaults apply: ListenerCertificate's selector and callback.
                listen.UseHttps();
            }

            listen.UseWebSocketHandoff();
        };
    }

    /// <summary><c>--check</c>: 0 and a one-line summary on stdout when valid; 1 and every error on stderr otherwise.</summary>
    public static int Check(GatewayCommandLine commandLine)
    {
        var path = commandLine.ConfigPath!;
        using var services = CheckServices();
        var result = ConfigLoader.Load(path, services);
        IReadOnlyList<ConfigError> errors = result.IsValid ? UrlErrors(commandLine.Urls, result.Config!) : result.Errors;
        if (errors.Count > 0)
        {
            foreach (var error in errors)
            {
                Console.Error.WriteLine(error);
            }

            if (result.Config is { } invalid)
            {
                ConfigLoader.DisposeNew(invalid.Policies.Values, null);
            }

            return 1;
        }

        var config = result.Config!;
        Console.WriteLine($"{path}: valid: {Plural(config.Routes.Count, "route")}, {Plural(config.Policies.Count, "policy", "policies")}");
        ConfigLoader.DisposeNew(config.Policies.Values, null);
        return 0;
    }

    /// <summary>
    /// Validates the configuration (or the demo's), then builds the application. Returns null with every error
    /// when the configuration is invalid: nothing is started.
    /// </summary>
    public static WebApplication? Build(GatewayCommandLine commandLine, string? demoConfiguration, out IReadOnlyList<ConfigError> errors)
    {
        var baseDirectory = commandLine.ConfigPath is null ? AppContext.BaseDirectory : Path.GetDirectoryName(Path.GetFullPath(commandLine.ConfigPath))!;
        ConfigResult Load(IServiceProvider services, IReadOnlyDictionary<string, PolicyInstance>? previous = null) => demoConfiguration is null
            ? ConfigLoader.Load(commandLine.ConfigPath!, services, previous)
            : ConfigLoader.Parse(demoConfiguration, baseDirectory, services, previous);

        // Validate before building anything, with throwaway services: an invalid file starts nothing.
        GatewayConfig preview;
        using (var checkServices = CheckServices())
        {
            var check = Load(checkServices);
            if (!check.IsValid)
            {
                errors = check.Errors;
                return null;
            }

            preview = check.Config!;
            ConfigLoader.DisposeNew(preview.Policies.Values, null);
            if (demoConfiguration is null && UrlErrors(commandLine.Urls, preview) is { Count: > 0 } urlErrors)
            {
                errors = urlErrors;
                return null;
            }
        }

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        var urls = commandLine.Urls ?? (preview.Listen.Count > 0 ? string.Join(';', preview.Listen) : DefaultUrls);
        builder.WebHost.UseUrls(urls);
        ListenerCertificate? certificate = null;
        if (urls.Split(';', StringSplitOptions.TrimEntries).Any(ListenValidator.IsHttps))
        {
            // The embedded demo has no file to name a certificate in: it makes a self-signed one for this run.
            var initial = preview.Certificate ?? DemoCertificate.Create();
            certificate = new ListenerCertificate(initial, NullLogger.Instance, TimeProvider.System);
            builder.WebHost.UseKestrelHttpsConfiguration();
            builder.WebHost.ConfigureKestrel(certificate.Configure);
            builder.Services.AddSingleton(certificate);
        }

        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // The callout client (http-auth, webhooks, HTTP routes) would log every request and attempt; Sluice logs failures itself.
        builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);
        builder.Logging.AddFilter("Polly", LogLevel.None);
        // Off entirely, not just quiet: while this category is enabled at any level, ASP.NET Core gives every request
        // an Activity and log scopes, and a WebSocket request keeps them for the connection's whole life (about
        // 0.6 KiB each). Sluice logs connections itself (events 100-109).
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        // Kestrel's warning per refused socket would print a line per attempt of a flood: RefusedConnectionsLog sums them.
        builder.Logging.AddFilter(RefusedConnectionsLog.KestrelConnectionsCategory, LogLevel.Error);
        builder.WebHost.ConfigureKestrel(o =>
        {
            // A connection that has not sent its request holds a descriptor and a place in the connection budget
            // (AddSluice caps Kestrel's connections inside the open-file limit): short timeouts give the places of idle
            // and slowloris connections back in seconds rather than Kestrel's default two minutes. Before its first
            // byte a connection is under the keep-alive timeout, then under the headers timeout.
            o.Limits.KeepAliveTimeout = KeepAliveTimeout;
            o.Limits.RequestHeadersTimeout = RequestHeadersTimeout;

            // An open connection need not hold its upgrade request's objects in Kestrel (about 4 KiB each):
            // docs/architecture.md, "After the handshake".
            // Endpoints from Kestrel's own configuration (Kestrel__Endpoints__* variables) get the defaults first and
            // would shift the addresses' order: with any, TLS is left to Kestrel and https:// connections keep their request.
            var kestrelEndpoints = builder.Configuration.GetSection("Kestrel:Endpoints").GetChildren().Any();
            o.ConfigureEndpointDefaults(HandoffDefaults(kestrelEndpoints ? "" : urls));
        });
        // Sluice's socket transport: an open WebSocket connection holds neither the transport's pipes nor its receive
        // loop (docs/architecture.md, "A transport of Sluice's own").
        builder.WebHost.UseSluiceSockets();
        if (InlineIo.Enabled)
        {
            // The application's continuations too: a message is read, run through its chain and written to the other
            // leg on the socket's I/O thread. Work that may block moves to the thread pool itself (scripts, large
            // messages: docs/architecture.md, "Where the gateway's code runs").
            builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = true);
        }

        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(preview.Limits.DrainSeconds));
        var sluice = builder.Services.AddSluice(o =>
        {
            o.MaxConnections = preview.Limits.MaxConnections;
            if (preview.Backplane?.NodeId is { } nodeId)
            {
                o.NodeId = nodeId;
            }
        });
        if (preview.Backplane is { } backplane)
        {
            // Read at start only, as the listen addresses are: a node does not change clusters on reload.
            sluice.AddRedisBackplane(backplane.Connection, o => o.ChannelPrefix = backplane.ChannelPrefix);
        }
        builder.Services.AddSluiceHttpCallouts();
        builder.Services.AddSingleton<LifecycleWebhooks>();
        var holder = new GatewayRuntimeHolder();
        builder.Services.AddSingleton(holder);
        builder.Services.AddSingleton<ClientAddresses>();
        AdminEndpoints.AddServices(builder.Services, preview);

        var app = builder.Build();
        var result = Load(app.Services);
        if (!result.IsValid)
        {
            errors = result.Errors;
            return null;
        }

        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        if (certificate is not null)
        {
            certificate.Logger = loggers.CreateLogger("Sluice.Gateway.Tls");
            app.Lifetime.ApplicationStopped.Register(certificate.Dispose);
        }

        var refused = new RefusedConnectionsLog(loggers, app.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits.MaxConcurrentConnections ?? 0);
        app.Lifetime.ApplicationStopped.Register(refused.Dispose);
        // First of all middleware: everything after it (the admin API's loopback check, every ip partition, the logs)
        // sees the client's address, not a trusted proxy's.
        var clientAddresses = app.Services.GetRequiredService<ClientAddresses>();
        app.Use((context, next) => clientAddresses.InvokeAsync(context, next));
        var runtime = new GatewayRuntime(result.Config!, commandLine.ConfigPath, loggers);
        holder.Runtime = runtime;
        ((IEndpointRouteBuilder)app).DataSources.Add(runtime.Endpoints);
        runtime.Start(app.Services);
        AdminEndpoints.Map(app, runtime);
        if (demoConfiguration is not null)
        {
            DemoPage.Map(app);
        }

        app.Lifetime.ApplicationStopped.Register(runtime.Dispose);
        // After the connections have closed (ApplicationStopping closes them), so their disconnect events are queued.
        app.Lifetime.ApplicationStopped.Register(() => app.Services.GetRequiredService<LifecycleWebhooks>().Drain());
        errors = [];
        return app;
    }

    /// <summary>Prints every route and URL, as the contract asks of the gateway when it starts.</summary>
    public static void PrintRoutes(WebApplication app, bool demo)
    {
        var runtime = app.Services.GetRequiredService<GatewayRuntimeHolder>().Runtime!;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToList();
        var http = addresses.FirstOrDefault() ?? DefaultUrls;
        var ws = http.Replace("http://", "ws://", StringComparison.Ordinal).Replace("https://", "wss://", StringComparison.Ordinal);
        var config = runtime.Config;
        var maxConnections = app.Services.GetRequiredService<IWebSocketConnectionRegistry>().MaxConnections;
        // Written as one block: a reader of the output that sees the first line sees the rest with it.
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        output.WriteLine($"Sluice gateway listening on {string.Join(", ", addresses)}{(runtime.ConfigPath is null ? " (embedded demo)" : $" ({runtime.ConfigPath})")}");
        foreach (var route in config.Routes)
        {
            var what = route.Proxy is { } proxy ? $"proxy -> {runtime.Config.Secrets.Conceal(string.Join(", ", proxy.Targets ?? [proxy.Target!]))}" : $"{route.Handler!.Type} handler";
            var lists = string.Concat(
                route.Upgrade.Count > 0 ? $"  upgrade: {string.Join(", ", route.Upgrade)}" : string.Empty,
                route.Inbound.Count > 0 ? $"  inbound: {string.Join(", ", route.Inbound)}" : string.Empty,
                route.Outbound.Count > 0 ? $"  outbound: {string.Join(", ", route.Outbound)}" : string.Empty);
            output.WriteLine($"  {ws + route.Path,-40} {what}{lists}");
        }

        output.WriteLine($"  {"dashboard:",-12} {http}{config.Admin.Path}/{(config.Admin.ApiKey is null ? "  (loopback clients only)" : "  (admin key required)")}");
        output.WriteLine($"  {"metrics:",-12} {http}{config.Admin.Path}/metrics");
        if (demo)
        {
            output.WriteLine($"  {"demo page:",-12} {http}/  (open it in two tabs and chat through /demo/{{room}})");
            if (addresses.Any(ListenValidator.IsHttps))
            {
                output.WriteLine($"  {"tls:",-12} a self-signed certificate made for this run (browsers warn about it); a file's \"tls\" names a real one");
            }
        }

        output.WriteLine($"  limits: messages up to {config.Limits.MaxMessageBytes} bytes, {maxConnections} connections; Ctrl+C closes every connection with 1001 and exits");
        output.WriteLine(InlineIo.Enabled
            ? "  I/O: inline on the sockets' threads (DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0 turns it off)"
            : "  I/O: on the thread pool");
        var gc = GC.GetConfigurationVariables();
        var conserve = gc.TryGetValue("GCConserveMem", out var level) ? Convert.ToInt64(level, CultureInfo.InvariantCulture) : 0;
        output.WriteLine($"  GC: {(GCSettings.IsServerGC ? "server" : "workstation")}, conserve memory {conserve}{(conserve > 0 ? " (DOTNET_GCConserveMemory=0 turns it off)" : string.Empty)}");
        Console.Out.Write(output.ToString());
        Console.Out.Flush();
    }

    /// <summary>An https:// address in <c>--urls</c> needs the file's <c>tls</c>, as one in <c>listen</c> does.</summary>
    private static List<ConfigError> UrlErrors(string? urls, GatewayConfig config) =>
    [
        .. (urls ?? string.Empty).Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(url => ListenValidator.IsHttps(url) && config.Certificate is null)
            .Select(url => new ConfigError("--urls", $"'{url}' needs a certificate: add \"tls\": {{ \"certificate\": \"FILE.pem\", \"key\": \"FILE.key\" }} to the configuration file")),
    ];

    private static ServiceProvider CheckServices() => new ServiceCollection().AddLogging().AddSluiceHttpCallouts().BuildServiceProvider();

    private static string Plural(int count, string one, string? many = null) => $"{count} {(count == 1 ? one : many ?? one + "s")}";
}

/// <summary>Lets services reach the runtime, which is created once the application is built.</summary>
internal sealed class GatewayRuntimeHolder
{
    public GatewayRuntime? Runtime { get; set; }
}
