// A Java app whose main only sleeps: the JVM catches SIGHUP for its shutdown hooks, so a
// SIGHUP ends it with status 129. Writes sigrecord's ready line to the file after --out.
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

public class Sleep {
    public static void main(String[] args) throws Exception {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("--out")) {
                String line = "ready pid=" + ProcessHandle.current().pid() + "\n";
                Files.writeString(Path.of(args[i + 1]), line, StandardOpenOption.APPEND);
            }
        }
        Thread.sleep(Long.MAX_VALUE);
    }
}
