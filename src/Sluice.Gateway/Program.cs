using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Sluice;
using Sluice.Gateway;
using Sluice.Gateway.Admin;
using Sluice.Gateway.Configuration;
using Sluice.Gateway.Demo;
using Sluice.Gateway.Hosting;

// Before any Regex is built: a json-schema `pattern` (and every library regex without its own timeout) runs on client
// input, and a pattern that backtracks would hold a thread for minutes. json-schema answers a timeout with 400.
AppContext.SetData("REGEX_DEFAULT_MATCH_TIMEOUT", TimeSpan.FromMilliseconds(200));

// Before the first socket (the demo backend's, Kestrel's): socket completions on their I/O thread.
InlineIo.Configure();

var commandLine = GatewayCommandLine.Parse(args);
if (commandLine.Error is not null)
{
    Console.Error.WriteLine($"sluice: {commandLine.Error}");
    Console.Error.WriteLine(GatewayCommandLine.Usage);
    return 2;
}

if (commandLine.Help)
{
    Console.WriteLine(GatewayCommandLine.Usage);
    return 0;
}

if (commandLine.Check)
{
    return GatewayApplication.Check(commandLine);
}

DemoBackend? demo = null;
try
{
    string? configText = null;
    if (commandLine.ConfigPath is null)
    {
        demo = await DemoBackend.StartAsync();
        configText = DemoBackend.Configuration(demo.Authority);
    }

    var app = GatewayApplication.Build(commandLine, configText, out var errors);
    if (app is null)
    {
        foreach (var error in errors)
        {
            Console.Error.WriteLine(error);
        }

        return 1;
    }

    await app.StartAsync();
    GatewayApplication.PrintRoutes(app, demo is not null);
    await app.WaitForShutdownAsync();
    await app.DisposeAsync();
    return 0;
}
finally
{
    if (demo is not null)
    {
        await demo.DisposeAsync();
    }
}
