namespace Sluice.Gateway.Tests.Infrastructure;

/// <summary>A temporary folder holding a gateway configuration file and whatever it refers to.</summary>
public sealed class ConfigFolder : IDisposable
{
    public ConfigFolder() => Path = Directory.CreateTempSubdirectory("sluice-gateway-").FullName;

    public string Path { get; }

    public string ConfigPath => System.IO.Path.Combine(Path, "sluice.json");

    public string Write(string json, string file = "sluice.json")
    {
        var path = System.IO.Path.Combine(Path, file);
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>Copies the CustomPolicy sample plugin into plugins/ next to the file.</summary>
    public void AddSamplePlugin()
    {
        var plugins = Directory.CreateDirectory(System.IO.Path.Combine(Path, "plugins")).FullName;
        var dll = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(GatewayProcess.GatewayDll)!, "..", "..", "..", "..", "..", "samples", "CustomPolicy", "bin",
            GatewayProcess.GatewayDll.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug", "net10.0", "MyCompany.Policies.dll");
        File.Copy(dll, System.IO.Path.Combine(plugins, "MyCompany.Policies.dll"), overwrite: true);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
