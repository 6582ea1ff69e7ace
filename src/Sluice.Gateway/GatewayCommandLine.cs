namespace Sluice.Gateway;

/// <summary>The gateway's command line (docs/gateway-contract.md, "Command line").</summary>
internal sealed record GatewayCommandLine(string? ConfigPath, string? Urls, bool Check, bool Help, string? Error)
{
    public const string Usage = """
        Usage: sluice [--config FILE] [--urls URL[;URL...]] [--check]

          (no flag)       run the embedded demo: /echo, /chat (pub/sub), /demo/{room} (proxied, with policies),
                          the dashboard, and a page at / to try it in a browser
          --config FILE   run the routes and policies of FILE (JSON; comments and trailing commas allowed);
                          FILE is watched and reloaded when it changes
          --urls URLS     where to listen (default http://127.0.0.1:5080; also "listen" in FILE; the flag wins);
                          https:// uses the certificate of "tls" in FILE (the demo makes a self-signed one)
          --check         validate FILE and exit: 0 and a summary when valid, 1 and every error otherwise
          --help          this text
        """;

    public static GatewayCommandLine Parse(IReadOnlyList<string> args)
    {
        string? config = null, urls = null;
        bool check = false, help = false;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            var value = arg.Contains('=', StringComparison.Ordinal) ? arg[(arg.IndexOf('=', StringComparison.Ordinal) + 1)..] : null;
            var name = value is null ? arg : arg[..arg.IndexOf('=', StringComparison.Ordinal)];
            switch (name)
            {
                case "--config" or "-c":
                    if ((config = value ?? Next(args, ref i)) is null)
                    {
                        return Failed("--config needs a file");
                    }

                    break;
                case "--urls":
                    if ((urls = value ?? Next(args, ref i)) is null)
                    {
                        return Failed("--urls needs one or more URLs");
                    }

                    foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        // Only the scheme: Kestrel's own forms (http://*:80, http://+:80) are not URIs.
                        if (!url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) && !url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
                        {
                            return Failed($"--urls: '{url}' is not an http:// or https:// URL");
                        }
                    }

                    break;
                case "--check":
                    check = true;
                    break;
                case "--help" or "-h" or "-?":
                    help = true;
                    break;
                default:
                    return Failed($"unknown argument '{arg}'");
            }
        }

        if (check && config is null)
        {
            return Failed("--check needs --config FILE");
        }

        return new GatewayCommandLine(config, urls, check, help, null);
    }

    private static string? Next(IReadOnlyList<string> args, ref int i) => i + 1 < args.Count ? args[++i] : null;

    private static GatewayCommandLine Failed(string error) => new(null, null, false, false, error);
}
