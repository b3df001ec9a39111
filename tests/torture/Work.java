// The java workload of the torture test: a HashMap merged into, its values sorted and folded
// into a checksum; one line per step (the JVM's own threads - GC, JIT - run alongside).
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;

public class Work {
    public static void main(String[] args) {
        HashMap<Integer, Long> m = new HashMap<>();
        long acc = 0;
        for (int step = 0; step < 12; step++) {
            for (int i = 0; i < 300000; i++) {
                m.merge((i * 7919 + step) % 100003, (long) i, Long::sum);
            }
            ArrayList<Long> values = new ArrayList<>(m.values());
            Collections.sort(values);
            for (int i = 0; i < values.size(); i += 97) {
                acc = (acc * 31 + values.get(i)) % 4294967291L;
            }
            System.out.println(step + " " + m.size() + " " + acc);
        }
    }
}
